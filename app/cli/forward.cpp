// diffusionlab-cli forward: noise an image with q(x_t | x_0) and write a strip of x_t
#include "app/cli/commands.h"

#include <cstdio>
#include <sstream>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/data/datasets.h"
#include "core/forward/schedule.h"
#include "core/sampling/sampler.h"
#ifdef DLAB_HAVE_IMAGING
#include "imaging/image_folder.h"
#include "imaging/image_io.h"
#endif

namespace dlab::app {

int cmd_forward(const std::vector<std::string>& argv) {
    Args args("forward");
    args.option("image", "an image file to noise")
        .option("dataset", "fashion-mnist (with --index)")
        .option("index", "index into the dataset's test split", "0")
        .option("schedule", "linear, cosine, scaled-linear or sigmoid", "cosine")
        .option("timesteps", "diffusion steps T", "1000")
        .option("t", "comma-separated timesteps to show", "0,100,250,500,750,999")
        .option("seed", "noise seed", "0")
        .option("size", "resize the image to SIZE x SIZE (0: keep, at most 256)", "0")
        .option("output", "the strip PNG (also -o)")
        .flag("zero-terminal-snr", "rescale the schedule to zero terminal SNR")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "forward (--image FILE | --dataset fashion-mnist --index I) -o STRIP.png"); rc >= 0)
        return rc;
#ifndef DLAB_HAVE_IMAGING
    return usage("forward: this build has no OpenCV imaging");
#else
    if (!args.has("output")) return usage("forward: -o STRIP.png is required");
    if (args.has("image") == args.has("dataset")) return usage("forward: give exactly one of --image FILE or --dataset fashion-mnist");
    ScheduleConfig sc;
    const auto kind = parse_schedule_kind(args.get("schedule"));
    if (!kind) return usage("forward: unknown schedule '" + args.get("schedule") + "'");
    sc.kind = *kind;
    auto T = args.get_int("timesteps", 2, 100000);
    if (!T) return usage(T.error());
    sc.timesteps = T.value();
    sc.zero_terminal_snr = args.has("zero-terminal-snr");
    auto ts = args.get_int_list("t", 0, T.value() - 1);
    if (!ts) return usage(ts.error());
    auto seed = args.get_int("seed", 0, INT64_MAX);
    if (!seed) return usage(seed.error());
    auto size = args.get_int("size", 0, 256);
    if (!size) return usage(size.error());
    at::Tensor x0;  // [C,H,W] in [-1, 1]
    if (args.has("dataset")) {
        if (args.get("dataset") != "fashion-mnist") return usage("forward: unknown dataset '" + args.get("dataset") + "'");
        auto data = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!data) return failure("forward: " + data.error());
        auto idx = args.get_int("index", 0, data->x.size(0) - 1);
        if (!idx) return usage(idx.error());
        x0 = data->x[idx.value()];
    } else {
        auto img = imaging::read_image(args.get("image"), 3);
        if (!img) return failure("forward: " + img.error());
        x0 = img.value() * 2 - 1;
        if (size.value() == 0 && std::max(x0.size(1), x0.size(2)) > 256) {
            return usage("forward: the image is larger than 256 pixels; give --size N");
        }
    }
    if (size.value() > 0)
        x0 = at::upsample_bilinear2d(x0.unsqueeze(0), {size.value(), size.value()}, false).squeeze(0);
    auto schedule = NoiseSchedule::create(sc);
    if (!schedule) return usage("forward: " + schedule.error());
    at::Generator gen = make_generator(static_cast<uint64_t>(seed.value()));
    const at::Tensor eps = at::randn(x0.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
    std::vector<at::Tensor> frames;
    for (int64_t t : ts.value()) {
        const at::Tensor xt = schedule->add_noise(x0.unsqueeze(0), eps.unsqueeze(0), at::full({1}, t, at::kLong));
        frames.push_back(((xt[0].clamp(-1, 1) + 1) / 2));
    }
    const at::Tensor strip = imaging::make_grid(at::stack(frames), int64_t(frames.size()), 2, 1.0);
    std::ostringstream params;
    params << "schedule=" << to_string(sc.kind) << " T=" << sc.timesteps << " t=" << args.get("t") << " seed=" << seed.value();
    if (auto st = imaging::write_png(args.get("output"), imaging::tensor_to_mat(strip), {{"parameters", params.str()}}); !st)
        return failure("forward: " + st.error());
    return 0;
#endif
}

}  // namespace dlab::app
