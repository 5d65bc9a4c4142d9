// diffusionlab-cli: everything the GUI does, scriptable. Exit codes: 0 success, 1 a runtime
// failure (file, model, device), 2 a usage error (unknown option, bad number). Each command lives
// in its own file in app/cli/; this file only dispatches.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "app/cli/cli_util.h"
#include "app/cli/commands.h"
#include "core/runtime/runtime.h"

namespace {

using Command = int (*)(const std::vector<std::string>&);

struct CommandEntry {
    const char* name;
    Command run;
    const char* summary;
};

// The commands, in the order the help lists them.
const CommandEntry kCommands[] = {
    {"schedule", dlab::app::cmd_schedule, "print or write a noise schedule (t, beta, alpha_bar, snr)"},
    {"info", dlab::app::cmd_info, "LibTorch version, devices and threads"},
    {"train", dlab::app::cmd_train, "train a diffusion model (Fashion-MNIST or a 2-D toy set)"},
    {"sample", dlab::app::cmd_sample, "sample images from a model (grid PNG, tensors, chain video)"},
    {"forward", dlab::app::cmd_forward, "noise an image with q(x_t | x_0): a strip of x_t"},
    {"train-classifier", dlab::app::cmd_train_classifier, "train the Fashion-MNIST classifier used by eval"},
    {"train-gan", dlab::app::cmd_train_gan, "train a class-conditional GAN (one big step) on Fashion-MNIST"},
    {"trilemma", dlab::app::cmd_trilemma, "quality, diversity and sampling cost: GAN, VAE prior and diffusion at 1-1000 steps"},
    {"train-clip", dlab::app::cmd_train_clip, "train the small CLIP of text-to-image (text and image encoders) on captioned Fashion-MNIST"},
    {"train-autoencoder", dlab::app::cmd_train_autoencoder,
     "train the KL autoencoder of latent diffusion (train --dataset latents:AE)"},
    {"eval", dlab::app::cmd_eval, "FID, sFID, IS, precision/recall, class agreement of samples (with the real floor); bits/dim (--metrics nll)"},
    {"compare-schedules", dlab::app::cmd_compare_schedules, "cosine against linear: same network and budget, several seeds, quality and per-timestep loss"},
    {"sweep", dlab::app::cmd_sweep, "the same metrics and diversity across guidance scales (cfg or classifier)"},
    {"video", dlab::app::cmd_video, "video diffusion on moving Fashion-MNIST clips: video train|sample|eval"},
    {"sds", dlab::app::cmd_sds, "score distillation (DreamFusion): an image or a 3-D voxel scene pushed by a frozen model's guided noise prediction"},
    {"models", dlab::app::cmd_models, "list the bundled and user models"},
    {"convert", dlab::app::cmd_convert, "store a model file's weights as float16 (bundled models)"},
    {"bench", dlab::app::cmd_bench, "time denoising steps of a model config"},
};

void print_usage(std::ostream& out) {
    out << "Usage: diffusionlab-cli [--version] [--help] COMMAND [OPTIONS]\n\nCommands:\n";
    for (const CommandEntry& c : kCommands) {
        const std::string name = c.name;
        out << "  " << name << std::string(name.size() < 11 ? 11 - name.size() : 1, ' ') << c.summary << "\n";
    }
    out << "\nRun 'diffusionlab-cli COMMAND --help' for a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {
        print_usage(std::cerr);
        return dlab::app::kUsageError;
    }
    const std::string command = args.front();
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (command == "--version" || command == "version") {
        std::cout << "diffusionlab-cli " << dlab::version() << " (LibTorch "
                  << dlab::runtime_info().torch_version << ")\n";
        return 0;
    }
    if (command == "--help" || command == "-h" || command == "help") {
        print_usage(std::cout);
        return 0;
    }
    for (const CommandEntry& c : kCommands) {
        if (command != c.name) continue;
        dlab::configure_threads();
        try {
            return c.run(rest);
        } catch (const std::exception& e) {
            // LibTorch reports bad shapes, CUDA out-of-memory and similar through exceptions.
            std::cerr << "diffusionlab-cli: " << command << ": " << dlab::error_message(e)
                      << (dlab::is_out_of_memory(e) ? " (out of memory: a smaller --batch may fit)" : "") << "\n";
            return dlab::app::kRuntimeError;
        }
    }
    return dlab::app::usage("unknown command '" + command + "' (see diffusionlab-cli --help)");
}
