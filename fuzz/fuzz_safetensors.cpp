// libFuzzer target: a model file as it arrives from outside. The bytes are written to a temporary
// file and read by load_safetensors(); a file that parses has its "dlab" config parsed and checked
// (ranges, then the config against the numbers the file holds), as load_model() does before it
// builds anything. Nothing may crash, hang or allocate without bound.
#include <cstdint>
#include <cstdio>
#include <string>

#include <unistd.h>

#include "core/io/model_io.h"
#include "core/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = "/tmp/dlab-fuzz-" + std::to_string(::getpid()) + ".safetensors";
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    auto file = dlab::load_safetensors(path);
    if (!file) return 0;
    auto config = dlab::stored_model_config(file.value(), path);
    if (!config) return 0;
    int64_t stored = 0;
    for (const auto& [name, t] : file->tensors) stored += t.numel();
    (void)(config->network.min_parameters() <= stored);
    return 0;
}
