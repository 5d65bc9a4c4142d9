// diffusionlab-cli: everything the GUI does, scriptable. Exit codes: 0 success, 1 a runtime
// failure (file, model, device), 2 a usage error (unknown option, bad number).
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "app/args.h"
#include "app/cli_commands.h"
#include "core/atomic_file.h"
#include "core/runtime.h"
#include "core/schedule.h"

namespace {

using dlab::app::Args;

constexpr int kRuntimeError = 1;
constexpr int kUsageError = 2;

int usage_error(const std::string& message) {
    std::cerr << "diffusionlab-cli: " << message << "\n";
    return kUsageError;
}

void print_usage(std::ostream& out) {
    out << "Usage: diffusionlab-cli [--version] [--help] COMMAND [OPTIONS]\n\n"
           "Commands:\n"
           "  schedule   print or write a noise schedule (t, beta, alpha_bar, snr)\n"
           "  info       LibTorch version, devices and threads\n"
           "  train      train a diffusion model (Fashion-MNIST or a 2-D toy set)\n"
           "  sample     sample images from a model (grid PNG, tensors, chain video)\n"
           "  forward    noise an image with q(x_t | x_0): a strip of x_t\n"
           "  train-classifier  train the Fashion-MNIST classifier used by eval\n"
           "  train-autoencoder train the KL autoencoder of latent diffusion (train --dataset latents:AE)\n"
           "  eval       FID, sFID, IS, precision/recall, class agreement of samples (with the real floor)\n"
           "  sweep      the same metrics and diversity across guidance scales (cfg or classifier)\n"
           "  models     list the bundled and user models\n"
           "  convert    store a model file's weights as float16 (bundled models)\n"
           "  bench      time denoising steps of a model config\n\n"
           "Run 'diffusionlab-cli COMMAND --help' for a command's options.\n";
}

int cmd_schedule(const std::vector<std::string>& argv) {
    Args args("schedule");
    args.option("schedule", "linear, cosine, scaled-linear or sigmoid", "cosine")
        .option("timesteps", "number of diffusion steps T", "1000")
        .option("beta-start", "first beta (linear, sigmoid)")
        .option("beta-end", "last beta (linear, sigmoid)")
        .flag("zero-terminal-snr", "rescale so that alpha_bar at T-1 is 0 (Lin et al. 2024)")
        .option("csv", "write t,beta,alpha_bar,snr to FILE, or '-' for standard output")
        .flag("help", "show this help");
    if (auto st = args.parse(argv); !st) return usage_error(st.error());
    if (args.has("help")) {
        std::cout << "Usage: diffusionlab-cli schedule [OPTIONS]\n" << args.help();
        return 0;
    }
    dlab::ScheduleConfig cfg;
    const auto kind = dlab::parse_schedule_kind(args.get("schedule"));
    if (!kind) {
        return usage_error("schedule: unknown schedule '" + args.get("schedule") +
                           "' (expected linear, cosine, scaled-linear or sigmoid)");
    }
    cfg.kind = *kind;
    auto T = args.get_int("timesteps", 2, 100000);
    if (!T) return usage_error(T.error());
    cfg.timesteps = T.value();
    if (args.has("beta-start")) {
        auto b = args.get_double("beta-start", 0.0, 1.0);
        if (!b) return usage_error(b.error());
        cfg.beta_start = b.value();
    }
    if (args.has("beta-end")) {
        auto b = args.get_double("beta-end", 0.0, 1.0);
        if (!b) return usage_error(b.error());
        cfg.beta_end = b.value();
    }
    cfg.zero_terminal_snr = args.has("zero-terminal-snr");
    auto schedule = dlab::NoiseSchedule::create(cfg);
    if (!schedule) return usage_error("schedule: " + schedule.error());

    const at::Tensor beta = schedule->betas(), abar = schedule->alpha_bars(), snr = schedule->snr();
    auto row = [&](int64_t t) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%lld,%.17g,%.17g,%.17g\n", static_cast<long long>(t),
                      beta[t].item<double>(), abar[t].item<double>(), snr[t].item<double>());
        return std::string(buf);
    };
    if (!args.has("csv")) {
        std::cout << "schedule " << dlab::to_string(cfg.kind) << ", T = " << cfg.timesteps
                  << (cfg.zero_terminal_snr ? ", zero terminal SNR" : "") << "\n"
                  << "t,beta,alpha_bar,snr\n";
        const int64_t n = cfg.timesteps;
        for (int64_t t : {int64_t{0}, n / 4, n / 2, 3 * n / 4, n - 1}) std::cout << row(t);
        std::cout << "(use --csv FILE or --csv - for every row)\n";
        return 0;
    }
    std::string csv = "t,beta,alpha_bar,snr\n";
    for (int64_t t = 0; t < cfg.timesteps; ++t) csv += row(t);
    const std::string target = args.get("csv");
    if (target == "-") {
        std::cout << csv;
        return 0;
    }
    if (auto st = dlab::write_file_atomic(target, csv); !st) {
        std::cerr << "diffusionlab-cli: schedule: " << st.error() << "\n";
        return kRuntimeError;
    }
    std::cerr << "wrote " << cfg.timesteps << " rows to " << target << "\n";
    return 0;
}

int cmd_info(const std::vector<std::string>& argv) {
    Args args("info");
    args.option("device", "auto, cpu, cuda or cuda:N", "auto").flag("help", "show this help");
    if (auto st = args.parse(argv); !st) return usage_error(st.error());
    if (args.has("help")) {
        std::cout << "Usage: diffusionlab-cli info [OPTIONS]\n" << args.help();
        return 0;
    }
    const auto info = dlab::runtime_info();
    std::cout << "DiffusionLab " << dlab::version() << "\n"
              << "LibTorch " << info.torch_version << "\n"
              << "CUDA available: " << (info.cuda_available ? "yes" : "no") << " ("
              << info.cuda_devices << " device(s))\n"
              << "intra-op threads: " << info.intra_op_threads << " of "
              << info.hardware_threads << " hardware threads\n";
    auto device = dlab::select_device(args.get("device"));
    if (!device) {
        std::cerr << "diffusionlab-cli: info: " << device.error() << "\n";
        return kRuntimeError;
    }
    std::cout << "device: " << device->str() << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {
        print_usage(std::cerr);
        return kUsageError;
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
    dlab::configure_threads();
    try {
        if (command == "schedule") return cmd_schedule(rest);
        if (command == "info") return cmd_info(rest);
        if (command == "train") return dlab::app::cmd_train(rest);
        if (command == "sample") return dlab::app::cmd_sample(rest);
        if (command == "train-classifier") return dlab::app::cmd_train_classifier(rest);
        if (command == "eval") return dlab::app::cmd_eval(rest);
        if (command == "sweep") return dlab::app::cmd_sweep(rest);
        if (command == "forward") return dlab::app::cmd_forward(rest);
        if (command == "models") return dlab::app::cmd_models(rest);
        if (command == "bench") return dlab::app::cmd_bench(rest);
        if (command == "train-autoencoder") return dlab::app::cmd_train_autoencoder(rest);
        if (command == "convert") return dlab::app::cmd_convert(rest);
    } catch (const std::exception& e) {
        // LibTorch reports bad shapes, CUDA out-of-memory and similar through exceptions.
        std::cerr << "diffusionlab-cli: " << command << ": " << e.what() << "\n";
        return kRuntimeError;
    }
    return usage_error("unknown command '" + command + "' (see diffusionlab-cli --help)");
}
