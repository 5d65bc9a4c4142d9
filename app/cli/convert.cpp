// diffusionlab-cli convert: store a model file's weights as float16
#include "app/cli/commands.h"

#include <cstdio>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/io/model_catalog.h"
#include "core/io/safetensors.h"
#include "core/latent/autoencoder.h"

namespace dlab::app {

int cmd_convert(const std::vector<std::string>& argv) {
    Args args("convert");
    args.option("in", "a model, autoencoder or classifier file (.safetensors)")
        .option("out", "the file to write")
        .option("autoencoder", "a latent model: refer to this autoencoder (a bundled name or a path)")
        .option("text-encoder", "a text-to-image model: refer to this CLIP (a bundled name or a path)")
        .flag("half", "store float32 tensors as float16 (half the size; loaded back as float32)")
        .flag("ema-only", "keep only the EMA weights of a model that has them (what sampling loads)")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "convert --in FILE --out FILE --half"); rc >= 0) return rc;
    if (!args.has("in") || !args.has("out")) return usage("convert: --in and --out are required");
    if (!args.has("half") && !args.has("autoencoder") && !args.has("text-encoder") && !args.has("ema-only"))
        return usage("convert: say what to convert (--half, --autoencoder, --text-encoder, --ema-only)");
    auto file = load_safetensors(args.get("in"));
    if (!file) return failure("convert: " + file.error());
    for (const char* ref : {"autoencoder", "text-encoder"}) {
        if (!args.has(ref)) continue;
        auto meta = file->metadata.find("dlab");
        if (meta == file->metadata.end()) return failure("convert: " + args.get("in") + " is not a DiffusionLab model");
        auto j = nlohmann::json::parse(meta->second, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return failure("convert: " + args.get("in") + ": corrupt config");
        j[std::string(ref) == "autoencoder" ? "autoencoder" : "text_encoder"] = args.get(ref);
        // The trainer named the autoencoder's file it encoded with ("... latents (PATH)"), a path
        // on the machine that trained: name the reference instead, as the GUI shows this line.
        if (std::string(ref) == "autoencoder" && j.contains("dataset") && j["dataset"].is_string()) {
            std::string d = j["dataset"].get<std::string>();
            if (const auto at = d.find(" latents ("); at != std::string::npos && d.back() == ')')
                j["dataset"] = d.substr(0, at) + " latents (" + args.get(ref) + ")";
        }
        meta->second = j.dump();
    }
    if (args.has("ema-only")) {
        bool has_ema = false;
        for (const auto& [name, t] : file->tensors) has_ema = has_ema || name.rfind("ema.", 0) == 0;
        if (!has_ema) return failure("convert: " + args.get("in") + " has no EMA weights (ema.*) to keep");
        for (auto it = file->tensors.begin(); it != file->tensors.end();)
            it = it->first.rfind("ema.", 0) == 0 ? std::next(it) : file->tensors.erase(it);
    }
    if (!args.has("half")) {
        if (auto st = save_safetensors(args.get("out"), file.value()); !st) return failure("convert: " + st.error());
        return 0;
    }
    int64_t converted = 0;
    for (auto& [name, t] : file->tensors)
        if (t.scalar_type() == at::kFloat) {
            t = t.to(at::kHalf);
            ++converted;
        }
    file->metadata["stored_as"] = "float16";
    if (auto st = save_safetensors(args.get("out"), file.value()); !st) return failure("convert: " + st.error());
    std::printf("convert: %lld float32 tensors stored as float16 in %s\n", (long long)converted, args.get("out").c_str());
    return 0;
}

}  // namespace dlab::app
