// diffusionlab-cli models: the bundled and user models
#include "app/cli/commands.h"

#include <filesystem>
#include <iostream>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/text/clip.h"
#include "core/io/model_catalog.h"
#include "core/gan/gan.h"
#include "core/io/manifest.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"

namespace dlab::app {

int cmd_models(const std::vector<std::string>& argv) {
    Args args("models");
    args.flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "models"); rc >= 0) return rc;
    const auto models = bundled_models();
    if (models.empty()) std::cout << "no models found in:";
    for (const auto& d : model_dirs()) std::cout << (models.empty() ? " " + d : "");
    if (models.empty()) std::cout << "\n";
    for (const auto& [name, path] : models) {
        auto file = load_safetensors(path);
        std::cout << name << "  " << path << "\n";
        if (!file) {
            std::cout << "  (unreadable: " << file.error() << ")\n";
            continue;
        }
        // One model's damaged config or manifest is reported on its line; the listing goes on.
        try {
            if (const auto gan = file->metadata.find("dlab_gan"); gan != file->metadata.end()) {
                const auto j = nlohmann::json::parse(gan->second, nullptr, false);
                auto gc = j.is_object() && j.contains("gan") ? gan_config_from_json(j["gan"]) : Result<GanConfig>(Error{"no config"});
                if (!gc) std::cout << "  (unusable GAN config: " << gc.error() << ")\n";
                else
                    std::cout << "  GAN (one step), z " << gc->z_dim << ", " << gc->num_classes << " classes, "
                              << gc->image_size << "x" << gc->image_size << "x" << gc->channels << "\n";
            } else if (const auto clip = file->metadata.find("dlab_clip"); clip != file->metadata.end()) {
                const auto j = nlohmann::json::parse(clip->second, nullptr, false);
                auto cc = j.is_object() && j.contains("config") ? clip_config_from_json(j["config"]) : Result<ClipConfig>(Error{"no config"});
                if (!cc) std::cout << "  (unusable CLIP config: " << cc.error() << ")\n";
                else
                    std::cout << "  CLIP text and image encoders (text-to-image), width " << cc->width << ", " << cc->layers
                              << " layers, vocabulary of " << (j.contains("vocabulary") ? j["vocabulary"].size() : 0) << " words\n";
            } else if (file->metadata.count("dlab") == 0) {
                std::cout << "  (no DiffusionLab config: a classifier, an autoencoder or another file)\n";
            } else {
                auto cfg = stored_model_config(file.value(), path);
                if (!cfg) {
                    std::cout << "  (unusable config: " << cfg.error() << ")\n";
                } else {
                    const auto steps = cfg->training.is_object() ? cfg->training.find("steps_done") : cfg->training.end();
                    std::cout << "  " << to_string(cfg->network.kind) << ", " << cfg->dataset << ", "
                              << to_string(cfg->schedule.kind) << " schedule, " << to_string(cfg->prediction)
                              << " prediction, "
                              << (cfg->network.context_dim > 0 ? "prompts read by the text encoder " + cfg->text_encoder
                                                               : std::to_string(cfg->network.num_classes) + " classes")
                              << ", trained "
                              << (steps != cfg->training.end() && steps->is_number_integer() ? std::to_string(steps->get<int64_t>()) : "?")
                              << " steps\n";
                }
            }
            if (std::filesystem::exists(manifest_path(path))) {
                auto manifest = read_manifest(path);
                if (!manifest) std::cout << "  (damaged manifest: " << manifest.error() << ")\n";
                else if (!manifest->summary.empty()) std::cout << "  " << manifest->summary << "\n";
            }
        } catch (const std::exception& e) {
            std::cout << "  (unreadable config: " << e.what() << ")\n";
        }
    }
    return 0;
}

}  // namespace dlab::app
