// diffusionlab-cli bench: time denoising steps and training of a model config
#include "app/cli/commands.h"

#include <chrono>
#include <cstdio>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/networks/network.h"
#include "core/runtime/runtime.h"

namespace dlab::app {

int cmd_bench(const std::vector<std::string>& argv) {
    Args args("bench");
    args.option("model", "a model name/file, or 'config' for the default architecture untrained", "config")
        .option("device", "cpu, cuda or auto", "auto")
        .option("batches", "batch sizes to time", "1,64")
        .option("iters", "timed denoising steps per batch size", "30")
        .option("base-channels", "with --model config: UNet base channels", "32")
        .option("mult", "with --model config: channel multipliers", "1,2,2")
        .flag("no-mkldnn", "use LibTorch's native convolutions instead of oneDNN (CPU)")
        .option("threads", "intra-op threads (0: one per core)", "0")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "bench [OPTIONS]"); rc >= 0) return rc;
    auto device = select_device(args.get("device"));
    if (!device) return failure("bench: " + device.error());
    auto batches = args.get_int_list("batches", 1, 4096);
    if (!batches) return usage(batches.error());
    auto iters = args.get_int("iters", 1, 100000);
    if (!iters) return usage(iters.error());
    Network net;
    NetworkConfig nc;
    if (args.get("model") == "config") {
        auto base = args.get_int("base-channels", 8, 1024);
        auto mult = args.get_int_list("mult", 1, 16);
        if (!base) return usage(base.error());
        if (!mult) return usage(mult.error());
        nc.base_channels = base.value();
        nc.channel_mult = mult.value();
        auto made = make_network(nc);
        if (!made) return usage("bench: " + made.error());
        net = made.value();
        net->to(device.value());
        net->eval();
    } else {
        auto path = resolve_model(args.get("model"));
        if (!path) return failure("bench: " + path.error());
        auto m = load_model(path.value(), device.value());
        if (!m) return failure("bench: " + m.error());
        net = m->network;
        nc = m->config.network;
    }
    torch::NoGradGuard ng;
    if (args.has("no-mkldnn")) at::globalContext().setUserEnabledMkldnn(false);
    auto threads = args.get_int("threads", 0, 1024);
    if (!threads) return usage(threads.error());
    configure_threads(static_cast<int>(threads.value()));
    std::printf("bench: %s, %lld parameters, device %s, %d threads, LibTorch %s\n",
                to_string(nc.kind).c_str(), (long long)net->parameter_count(), device->str().c_str(),
                at::get_num_threads(), runtime_info().torch_version.c_str());
    std::printf("%8s %12s %14s %16s %22s\n", "batch", "forward", "ms/step (CFG)", "img-steps/s (CFG)", "images/s (50-step DDIM)");
    for (int64_t b : batches.value()) {
        // A guided step is one forward pass over 2b inputs (conditional + unconditional halves).
        const int64_t fb = 2 * b;
        std::vector<int64_t> shape = nc.kind == NetworkKind::UNet
                                         ? std::vector<int64_t>{fb, nc.in_channels, nc.image_size, nc.image_size}
                                         : std::vector<int64_t>{fb, nc.in_channels};
        const at::Tensor x = at::randn(shape).to(device.value());
        const at::Tensor t = at::full({fb}, 500, at::kLong).to(device.value());
        const at::Tensor y = at::zeros({fb}, at::kLong).to(device.value());
        auto sync = [&] {
            if (device->is_cuda()) torch::cuda::synchronize();
        };
        for (int i = 0; i < 3; ++i) net->forward(x, t, nc.num_classes > 0 ? y : at::Tensor());
        sync();
        std::vector<double> ms;
        for (int64_t i = 0; i < iters.value(); ++i) {
            const auto a = std::chrono::steady_clock::now();
            net->forward(x, t, nc.num_classes > 0 ? y : at::Tensor());
            sync();
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
        }
        std::sort(ms.begin(), ms.end());
        const double med = ms[ms.size() / 2];
        std::printf("%8lld %12s %14.3f %16.1f %22.1f\n", (long long)b, "median", med, 1000.0 * b / med,
                    1000.0 * b / (50 * med));
    }
    return 0;
}

}  // namespace dlab::app
