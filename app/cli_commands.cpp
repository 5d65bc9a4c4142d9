#include "app/cli_commands.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli_util.h"
#include "core/model_catalog.h"
#include "core/datasets.h"
#include "core/classifier.h"
#include "core/generate.h"
#include "core/guidance.h"
#include "core/metrics.h"
#include "core/model_io.h"
#include "core/noisy_classifier.h"
#include "core/atomic_file.h"
#include "core/runtime.h"
#include "core/safetensors.h"
#include "core/sampler.h"
#include "core/trainer.h"
#ifdef DLAB_HAVE_IMAGING
#include "imaging/image_folder.h"
#include "imaging/image_io.h"
#endif

namespace dlab::app {


int cmd_train(const std::vector<std::string>& argv) {
    Args args("train");
    args.option("dataset", "fashion-mnist, images:DIR (class subfolders = labels), latents:AUTOENCODER (Fashion-MNIST latents) or toy:moons|swissroll|8gaussians|checkerboard", "fashion-mnist")
        .option("config", "a JSON settings file (network, schedule, prediction, training); options given here win")
        .option("schedule", "linear, cosine, scaled-linear or sigmoid", "cosine")
        .option("timesteps", "diffusion steps T", "1000")
        .option("prediction", "eps, v or x0", "eps")
        .option("steps", "optimisation steps", "10000")
        .option("batch", "batch size", "128")
        .option("lr", "learning rate", "2e-4")
        .option("warmup", "warm-up steps", "200")
        .option("ema", "EMA decay", "0.999")
        .option("p-uncond", "probability of the null class (classifier-free guidance)", "0.1")
        .option("min-snr", "min-SNR-gamma weighting (0: off)", "0")
        .option("size", "model size preset: tiny, small (the default model's) or large")
        .option("base-channels", "UNet channels at full resolution", "32")
        .option("dropout", "dropout in residual blocks", "0.1")
        .option("image-size", "images:DIR: side of the square the images are resized and cropped to", "32")
        .option("channels", "images:DIR: 1 (grey) or 3 (RGB)", "3")
        .option("vlb-weight", "with --learn-sigma: weight of L_vlb in the hybrid loss", "0.001")
        .option("seed", "random seed", "0")
        .option("checkpoint-every", "steps between checkpoints", "1000")
        .option("log-every", "steps between progress lines", "100")
        .option("out", "run folder (checkpoint, model, loss.csv)")
        .option("max-minutes", "stop (with a checkpoint) after this much wall time; resume later", "0")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("learn-sigma", "learn the variance too (hybrid loss L_simple + w L_vlb, Improved DDPM)")
        .flag("bf16", "bf16 autocast of the forward pass (CUDA)")
        .flag("hflip", "random horizontal flips")
        .flag("resume", "continue from OUT/checkpoint.safetensors")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "train --out DIR [OPTIONS]"); rc >= 0) return rc;
    if (!args.has("out")) return usage("train: --out DIR is required");
    TrainConfig tc;
    ModelConfig mc;
    auto steps = args.get_int("steps", 1, 100000000);
    auto batch = args.get_int("batch", 1, 65536);
    auto lr = args.get_double("lr", 1e-8, 1.0);
    auto warm = args.get_int("warmup", 0, 100000000);
    auto ema = args.get_double("ema", 0.0, 1.0);
    auto pu = args.get_double("p-uncond", 0.0, 0.99);
    auto msnr = args.get_double("min-snr", 0.0, 1e6);
    auto base = args.get_int("base-channels", 8, 1024);
    auto drop = args.get_double("dropout", 0.0, 0.9);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    auto ce = args.get_int("checkpoint-every", 1, 100000000);
    auto le = args.get_int("log-every", 1, 100000000);
    auto T = args.get_int("timesteps", 2, 100000);
    auto isize = args.get_int("image-size", 4, 4096);
    auto chans = args.get_int("channels", 1, 3);
    auto vlbw = args.get_double("vlb-weight", 0.0, 1e3);
    for (const std::string* e : {&steps.error(), &batch.error(), &lr.error(), &warm.error(), &ema.error(),
                                 &pu.error(), &msnr.error(), &base.error(), &drop.error(), &seed.error(),
                                 &ce.error(), &le.error(), &T.error(), &isize.error(), &chans.error(), &vlbw.error()})
        if (!e->empty()) return usage(*e);
    if (chans.value() == 2) return usage("train: --channels must be 1 or 3");
    auto device = select_device(args.get("device"));
    if (!device) return failure("train: " + device.error());

    // The dataset fixes the network's kind and input shape.
    const std::string ds = args.get("dataset");
    Result<LabelledData> data = Error{""};
    if (ds.rfind("images:", 0) == 0) {
#ifndef DLAB_HAVE_IMAGING
        return usage("train: this build has no OpenCV imaging; images:DIR is not available");
#else
        imaging::ImageFolderOptions io;
        io.size = isize.value();
        io.channels = static_cast<int>(chans.value());
        imaging::ImageFolderReport report;
        data = imaging::load_image_folder(ds.substr(7), io, &report);
        if (!report.skipped.empty()) {
            std::string list;
            for (size_t i = 0; i < report.skipped.size() && i < 10; ++i) list += "\n  " + report.skipped[i];
            if (report.skipped.size() > 10) list += "\n  ... and " + std::to_string(report.skipped.size() - 10) + " more";
            std::cerr << "warning: skipped " << report.skipped.size() << " unreadable file(s):" << list << "\n";
        }
#endif
    } else if (ds.rfind("latents:", 0) == 0) {
        // Latent diffusion: Fashion-MNIST encoded by the autoencoder into unit-variance latents.
        auto ae_path = resolve_model(ds.substr(8));
        if (!ae_path) return failure("train: autoencoder: " + ae_path.error());
        auto ae = load_autoencoder(ae_path.value(), device.value());
        if (!ae) return failure("train: " + ae.error());
        auto images = load_fashion_mnist(fashion_mnist_dir(), true);
        if (!images) return failure("train: " + images.error());
        LabelledData latents = images.value();
        latents.x = encode_all(ae.value(), images->x, device.value());
        latents.name = "fashion-mnist latents (" + ds.substr(8) + ")";
        std::cerr << "encoded " << latents.x.size(0) << " images to latents of shape " << latents.x.size(1) << "x"
                  << latents.x.size(2) << "x" << latents.x.size(3) << " (mean " << latents.x.mean().item<double>()
                  << ", std " << latents.x.std().item<double>() << ")\n";
        // A bundled name stays a name; a file is referenced by its absolute path.
        const std::string spec = ds.substr(8);
        mc.autoencoder = spec.find('/') == std::string::npos && spec.find(".safetensors") == std::string::npos
                             ? spec : std::filesystem::absolute(spec).string();
        data = std::move(latents);
    } else if (ds == "fashion-mnist" || ds.rfind("toy:", 0) == 0) {
        data = load_builtin_dataset(ds);
    } else {
        return usage("train: unknown dataset '" + ds + "' (fashion-mnist, images:DIR or toy:NAME)");
    }
    if (!data) return failure("train: " + data.error());
    shape_network_for_data(data.value(), mc.network);

    // Settings file first, then the options given on the command line (without a file, every
    // option's value, given or default, is used).
    const bool has_config = args.given("config");
    if (has_config) {
        std::ifstream in(args.get("config"));
        if (!in) return failure("train: cannot read the settings file " + args.get("config"));
        const auto j = nlohmann::json::parse(in, nullptr, false);
        if (j.is_discarded()) return failure("train: " + args.get("config") + " is not valid JSON");
        if (auto st = apply_settings_json(j, mc, tc); !st) return failure("train: " + args.get("config") + ": " + st.error());
    }
    auto use = [&](const char* name) { return !has_config || args.given(name); };
    if (use("steps")) tc.steps = steps.value();
    if (use("batch")) tc.batch = batch.value();
    if (use("lr")) tc.lr = lr.value();
    if (use("warmup")) tc.warmup = warm.value();
    if (use("ema")) tc.ema_decay = ema.value();
    if (use("p-uncond")) tc.p_uncond = pu.value();
    if (use("min-snr")) tc.min_snr_gamma = msnr.value();
    if (use("seed")) tc.seed = static_cast<uint64_t>(seed.value());
    if (use("checkpoint-every")) tc.checkpoint_every = ce.value();
    if (use("log-every")) tc.log_every = le.value();
    if (use("vlb-weight")) tc.vlb_weight = vlbw.value();
    if (args.given("hflip") || !has_config) tc.hflip = args.given("hflip");
    if (args.given("bf16") || !has_config) tc.bf16 = args.given("bf16");
    if (args.given("learn-sigma") || !has_config) mc.network.learn_sigma = args.given("learn-sigma");
    if (use("schedule")) {
        const auto sk = parse_schedule_kind(args.get("schedule"));
        if (!sk) return usage("train: unknown schedule '" + args.get("schedule") + "'");
        mc.schedule.kind = *sk;
    }
    if (use("timesteps")) mc.schedule.timesteps = T.value();
    if (use("prediction")) {
        const auto pt = parse_prediction_type(args.get("prediction"));
        if (!pt) return usage("train: unknown prediction type '" + args.get("prediction") + "' (eps, v or x0)");
        mc.prediction = *pt;
    }
    if (args.given("size")) {
        if (auto st = apply_size_preset(args.get("size"), mc.network); !st) return usage("train: " + st.error());
    }
    if (mc.network.kind == NetworkKind::UNet) {
        if (use("base-channels") && (!args.given("size") || args.given("base-channels"))) mc.network.base_channels = base.value();
        if (use("dropout")) mc.network.dropout = drop.value();
    }
    auto net = make_network(mc.network);
    if (!net) return failure("train: " + net.error());
    std::cerr << "training " << to_string(mc.network.kind) << " (" << net.value()->parameter_count()
              << " parameters) on " << data->name << " (" << data->x.size(0) << " examples, "
              << data->num_classes << " classes), " << to_string(mc.schedule.kind) << " schedule, "
              << to_string(mc.prediction) << " prediction" << (mc.network.learn_sigma ? ", hybrid loss" : "")
              << (tc.bf16 ? ", bf16 autocast" : "") << ", device " << device->str() << "\n";
    auto max_minutes = args.get_double("max-minutes", 0.0, 1e7);
    if (!max_minutes) return usage(max_minutes.error());
    std::atomic<bool> stop{false};
    const auto started = std::chrono::steady_clock::now();
    const double budget_s = max_minutes.value() * 60.0;
    TrainHooks hooks;
    hooks.cancel = &stop;
    hooks.on_progress = [&stop, started, budget_s](const TrainProgress& p) {
        if (budget_s > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() > budget_s)
            stop = true;
        std::fprintf(stderr, "step %lld/%lld  loss %.5f  lr %.2e  %.0f img/s  ETA %s\n",
                     static_cast<long long>(p.step), static_cast<long long>(p.total), p.loss, p.lr,
                     p.images_per_s, format_duration(p.eta_s).c_str());
    };
    auto r = train(mc, tc, data.value(), device.value(), args.get("out"), args.has("resume"), hooks);
    if (!r) return failure(r.error());
    if (r->cancelled) std::cerr << "stopped at the time limit; continue with --resume\n";
    std::cerr << "done: " << r->steps_done << " steps, " << r->seconds << " s, "
              << r->images_per_s << " img/s; model in " << args.get("out") << "/model.safetensors\n";
    return 0;
}

int cmd_sample(const std::vector<std::string>& argv) {
    Args args("sample");
    args.option("model", "default, a bundled name or a .safetensors file", "default")
        .option("class", "class index for every sample (default: cycle through the classes)")
        .flag("unconditional", "sample with the null class (no guidance)")
        .option("guidance", "classifier-free guidance scale s (0 uncond, 1 cond, >1 guided)", "3")
        .option("classifier-scale", "classifier guidance scale c (0: off); with --guidance 0 it steers the unconditional path", "0")
        .option("noisy-classifier", "the noise-aware classifier for --classifier-scale", "fashion-mnist-noisy-classifier")
        .option("sampler", "ddpm, ddim or dpmpp2m", "ddim")
        .option("steps", "sampling steps", "50")
        .option("eta", "DDIM eta", "0")
        .option("spacing", "leading, trailing or linspace", "trailing")
        .option("seed", "random seed", "0")
        .option("count", "number of samples", "16")
        .option("batch", "samples per forward pass", "256")
        .option("output", "grid PNG (also -o)")
        .option("tensors", "write images/labels (or points/labels) to a .safetensors file")
        .option("chain-video", "write the chain of the first batch (x_t at every step) as MP4")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("deterministic", "CUDA: no TF32, deterministic cuDNN (closer to CPU results)")
        .flag("quiet", "no progress on stderr")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "sample [--model M] [OPTIONS] -o GRID.png"); rc >= 0) return rc;
    auto steps = args.get_int("steps", 1, 100000);
    if (!steps) return usage(steps.error());
    auto count = args.get_int("count", 1, 1000000);
    if (!count) return usage(count.error());
    auto batch = args.get_int("batch", 1, 100000);
    if (!batch) return usage(batch.error());
    auto eta = args.get_double("eta", 0.0, 1.0);
    if (!eta) return usage(eta.error());
    auto scale = args.get_double("guidance", -100.0, 100.0);
    if (!scale) return usage(scale.error());
    auto seed = args.get_int("seed", 0, INT64_MAX);
    if (!seed) return usage(seed.error());
    const auto kind = parse_sampler_kind(args.get("sampler"));
    if (!kind) return usage("sample: unknown sampler '" + args.get("sampler") + "' (ddpm, ddim or dpmpp2m)");
    const auto spacing = parse_timestep_spacing(args.get("spacing"));
    if (!spacing) return usage("sample: unknown spacing '" + args.get("spacing") + "'");
    if (!args.has("output") && !args.has("tensors")) return usage("sample: give -o GRID.png and/or --tensors FILE");
#ifndef DLAB_HAVE_IMAGING
    if (args.has("output") || args.has("chain-video"))
        return usage("sample: this build has no OpenCV imaging; use --tensors");
#endif
    if (args.has("deterministic")) {
        at::globalContext().setAllowTF32CuDNN(false);
        at::globalContext().setAllowTF32CuBLAS(false);
        at::globalContext().setDeterministicCuDNN(true);
    }
    auto device = select_device(args.get("device"));
    if (!device) return failure("sample: " + device.error());
    auto path = resolve_model(args.get("model"));
    if (!path) return failure("sample: " + path.error());
    auto model = load_model(path.value(), device.value());
    if (!model) return failure("sample: " + model.error());
    const ModelConfig& mc = model->config;
    const int64_t C = mc.network.num_classes;
    int64_t fixed_class = -1;
    if (args.has("class")) {
        const bool classifier_guided = args.get("classifier-scale") != "0";
        if (C == 0 && !classifier_guided)
            return usage("sample: the model is unconditional; --class needs --classifier-scale");
        auto k = args.get_int("class", 0, (C > 0 ? C : 1000) - 1);
        if (!k) return usage(k.error());
        fixed_class = k.value();
    }
    auto schedule = NoiseSchedule::create(mc.schedule);
    if (!schedule) return failure("sample: " + schedule.error());
    SamplerConfig sc;
    sc.kind = *kind;
    sc.steps = steps.value();
    sc.eta = kind == SamplerKind::Ddpm ? 1.0 : eta.value();
    sc.spacing = *spacing;
    // Images live in [-1, 1]; the 2-D toy sets within about [-4, 4].
    sc.clip_x0 = true;
    sc.clip_value = mc.network.kind == NetworkKind::UNet ? 1.0 : 5.0;
    auto probe = make_sampler(schedule.value(), sc);
    if (!probe) return usage("sample: " + probe.error());

    const int64_t N = count.value();
    at::Tensor labels = at::arange(N, at::kLong);
    if (C > 0) labels = fixed_class >= 0 ? at::full({N}, fixed_class, at::kLong) : labels.remainder(C);
    if (args.has("unconditional") && C > 0) labels = at::full({N}, C, at::kLong);
    GenerateRequest req;
    req.sampler = sc;
    req.labels = C > 0 ? labels : at::Tensor();
    req.count = N;
    req.guidance = scale.value();
    auto cscale = args.get_double("classifier-scale", -1000.0, 1000.0);
    if (!cscale) return usage(cscale.error());
    if (cscale.value() != 0.0) {
        auto cpath = resolve_model(args.get("noisy-classifier"));
        if (!cpath) return failure("sample: " + cpath.error());
        auto clf = load_noisy_classifier(cpath.value(), device.value());
        if (!clf) return failure("sample: " + clf.error());
        const auto& cc = clf.value()->config();
        if (mc.network.kind != NetworkKind::UNet || cc.in_channels != mc.network.in_channels ||
            cc.image_size != mc.network.image_size)
            return usage("sample: the classifier's images (" + std::to_string(cc.in_channels) + "x" +
                         std::to_string(cc.image_size) + "x" + std::to_string(cc.image_size) + ") do not match the model's");
        req.classifier_grad = classifier_gradient(clf.value(), schedule.value());
        req.classifier_scale = cscale.value();
        // The classifier steers towards the asked classes even when the model runs unconditionally.
        at::Tensor target = at::arange(N, at::kLong).remainder(cc.num_classes);
        if (fixed_class >= 0) {
            if (fixed_class >= cc.num_classes) return usage("sample: --class is out of the classifier's range");
            target = at::full({N}, fixed_class, at::kLong);
        }
        req.classifier_labels = target;
    }
    req.seed = static_cast<uint64_t>(seed.value());
    req.batch = batch.value();
    std::vector<at::Tensor> video;  // grids of x_t over the chain of the first batch
    // The chain video shows x_t: pixel models only (a latent model's x_t is a latent).
    const bool record = args.has("chain-video") && mc.network.kind == NetworkKind::UNet && !model->autoencoder;
    if (args.has("chain-video") && model->autoencoder) std::cerr << "sample: no chain video for a latent model\n";
    const bool quiet = args.has("quiet");
    const auto t0 = std::chrono::steady_clock::now();
    auto out = generate(model.value(), req, [&](int64_t start, int64_t n, const StepInfo& s) {
#ifdef DLAB_HAVE_IMAGING
        if (record && start == 0) {
            const int64_t k = std::min<int64_t>(n, 16);
            video.push_back(imaging::make_grid(((s.x_t.narrow(0, 0, k).clamp(-1, 1) + 1) / 2).cpu(), 4, 1, 1.0));
            if (s.index + 1 == s.total)
                video.push_back(imaging::make_grid(((s.x_next.narrow(0, 0, k).clamp(-1, 1) + 1) / 2).cpu(), 4, 1, 1.0));
        }
#endif
        if (!quiet && ((s.index + 1) % 10 == 0 || s.index + 1 == s.total))
            std::fprintf(stderr, "\rsamples %lld-%lld: step %lld/%lld", (long long)start, (long long)(start + n),
                         (long long)(s.index + 1), (long long)s.total);
    });
    if (!out) return failure("sample: " + out.error());
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!args.has("quiet")) std::fprintf(stderr, "\n%lld samples in %.2f s on %s\n", (long long)N, secs, device->str().c_str());
    at::Tensor x = out.value();
    const bool images = mc.network.kind == NetworkKind::UNet;
    if (images) x = ((x.clamp(-1, 1) + 1) / 2).contiguous();
    if (args.has("tensors")) {
        TensorFile f;
        f.tensors[images ? "images" : "points"] = x;
        f.tensors["labels"] = labels;
        f.metadata["model"] = path.value();
        f.metadata["sampler"] = to_string(sc.kind);
        f.metadata["steps"] = std::to_string(sc.steps);
        f.metadata["guidance"] = std::to_string(scale.value());
        f.metadata["seed"] = std::to_string(seed.value());
        if (auto st = save_safetensors(args.get("tensors"), f); !st) return failure("sample: " + st.error());
    }
#ifdef DLAB_HAVE_IMAGING
    if (args.has("chain-video")) {
        if (!images) return usage("sample: --chain-video needs an image model");
        for (int i = 0; i < 12; ++i) video.push_back(video.back());  // hold the final image
        if (auto st = imaging::write_video(args.get("chain-video"), video, 12.0, 4); !st)
            return failure("sample: " + st.error());
    }
    if (args.has("output")) {
        if (!images) return usage("sample: -o needs an image model; use --tensors for points");
        const int64_t cols = C > 0 && fixed_class < 0 ? std::min<int64_t>(C, N) : int64_t(std::ceil(std::sqrt(double(N))));
        const at::Tensor grid = imaging::make_grid(x, cols, 2, 1.0);
        std::ostringstream params;
        params << "model=" << args.get("model") << " sampler=" << to_string(sc.kind) << " steps=" << sc.steps
               << " eta=" << sc.eta << " guidance=" << scale.value() << " classifier_scale=" << cscale.value()
               << " seed=" << seed.value()
               << " class=" << (fixed_class >= 0 ? std::to_string(fixed_class) : std::string("cycle"));
        auto mat = imaging::tensor_to_mat(grid);
        if (auto st = imaging::write_png(args.get("output"), mat, {{"parameters", params.str()}}); !st)
            return failure("sample: " + st.error());
    }
#endif
    return 0;
}

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

int cmd_train_classifier(const std::vector<std::string>& argv) {
    Args args("train-classifier");
    args.option("out", "the classifier file (.safetensors)")
        .flag("noisy", "a noise-aware classifier p(y | x_t, t) for classifier guidance (else a clean one for metrics)")
        .option("epochs", "clean: passes over the training set", "8")
        .option("steps", "noisy: optimisation steps", "6000")
        .option("schedule", "noisy: the noise schedule it learns (linear, cosine, ...)", "cosine")
        .option("base-channels", "noisy: encoder channels at full resolution", "32")
        .option("batch", "batch size", "128")
        .option("lr", "learning rate (default 1e-3 clean, 3e-4 noisy)")
        .option("seed", "random seed", "0")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "train-classifier --out FILE [--noisy] [OPTIONS]"); rc >= 0) return rc;
    if (!args.has("out")) return usage("train-classifier: --out FILE is required");
    const bool noisy = args.given("noisy");
    auto epochs = args.get_int("epochs", 1, 1000);
    auto steps = args.get_int("steps", 1, 10000000);
    auto base = args.get_int("base-channels", 8, 512);
    auto batch = args.get_int("batch", 1, 65536);
    Result<double> lr = args.given("lr") ? args.get_double("lr", 1e-8, 1.0) : Result<double>(noisy ? 3e-4 : 1e-3);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    for (const std::string* e : {&epochs.error(), &steps.error(), &base.error(), &batch.error(), &lr.error(), &seed.error()})
        if (!e->empty()) return usage(*e);
    const auto sk = parse_schedule_kind(args.get("schedule"));
    if (!sk) return usage("train-classifier: unknown schedule '" + args.get("schedule") + "'");
    auto device = select_device(args.get("device"));
    if (!device) return failure("train-classifier: " + device.error());
    auto train = load_fashion_mnist(fashion_mnist_dir(), true);
    if (!train) return failure("train-classifier: " + train.error());
    auto test = load_fashion_mnist(fashion_mnist_dir(), false);
    if (!test) return failure("train-classifier: " + test.error());
    auto log = [](const std::string& line) { std::cerr << line << "\n"; };
    if (noisy) {
        NoisyClassifierConfig cc;
        cc.base_channels = base.value();
        cc.schedule.kind = *sk;
        cc.num_classes = train->num_classes;
        NoisyClassifierTraining tr;
        tr.steps = steps.value();
        tr.batch = batch.value();
        tr.lr = lr.value();
        tr.seed = static_cast<uint64_t>(seed.value());
        const auto t0 = std::chrono::steady_clock::now();
        auto net = train_noisy_classifier(cc, tr, train.value(), device.value(), log);
        if (!net) return failure("train-classifier: " + net.error());
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::vector<int64_t> ts = {0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999};
        auto acc = noisy_accuracy_by_t(net.value(), test.value(), ts, device.value());
        nlohmann::json report{{"train_seconds", secs}, {"steps", tr.steps}, {"batch", tr.batch},
                              {"device", device->str()}, {"test_accuracy_by_t", nlohmann::json::object()}};
        std::cout << "test accuracy by t (10000 test images, one noise draw each)\n";
        for (auto [t, a] : acc) {
            report["test_accuracy_by_t"][std::to_string(t)] = a;
            std::cout << "  t=" << t << "  " << a << "\n";
        }
        if (auto st = save_noisy_classifier(args.get("out"), net.value(), report); !st)
            return failure("train-classifier: " + st.error());
        return 0;
    }
    auto net = train_classifier(train.value(), test.value(), epochs.value(), batch.value(), lr.value(),
                                static_cast<uint64_t>(seed.value()), device.value(), log);
    if (!net) return failure("train-classifier: " + net.error());
    const double acc = classifier_accuracy(net.value(), test.value(), device.value());
    std::cout << "test accuracy " << acc << "\n";
    if (auto st = save_classifier(args.get("out"), net.value(), acc); !st) return failure("train-classifier: " + st.error());
    return 0;
}

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
        auto it = file->metadata.find("dlab");
        if (it != file->metadata.end()) {
            auto cfg = model_config_from_json(nlohmann::json::parse(it->second, nullptr, false));
            if (cfg) {
                std::cout << "  " << to_string(cfg->network.kind) << ", " << cfg->dataset << ", "
                          << to_string(cfg->schedule.kind) << " schedule, " << to_string(cfg->prediction)
                          << " prediction, " << cfg->network.num_classes << " classes, trained "
                          << cfg->training.value("steps_done", 0) << " steps\n";
            }
        }
        std::ifstream manifest(path.substr(0, path.size() - 12) + ".json");
        if (manifest) {
            auto m = nlohmann::json::parse(manifest, nullptr, false);
            if (!m.is_discarded() && m.contains("summary")) std::cout << "  " << m["summary"].get<std::string>() << "\n";
        }
    }
    return 0;
}

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
