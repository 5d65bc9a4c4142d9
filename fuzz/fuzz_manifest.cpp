// libFuzzer target: a bundled model's manifest (name.json). Parsing and the shape checks must
// refuse anything malformed with a message; a figure looked up in what passed is a finite number
// or nothing.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/io/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto m = dlab::parse_manifest(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    if (!m) {
        if (m.error().rfind("fuzz.json: ", 0) != 0) std::abort();  // every message names the file
        return 0;
    }
    for (const auto& keys : {std::vector<std::string>{"latent", "s=1", "fid"}, {"vae_prior_samples_n10000", "fid"}, {"eval"}})
        if (auto v = dlab::manifest_figure(m.value(), keys); v && !std::isfinite(*v)) std::abort();
    return 0;
}
