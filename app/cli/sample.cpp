// diffusionlab-cli sample: images from a model (grid PNG, tensors, chain video)
#include "app/cli/commands.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "app/cli/prompts.h"
#include "core/data/datasets.h"
#include "core/forward/schedule.h"
#include "core/guidance/noisy_classifier.h"
#include "core/io/atomic_file.h"
#include "core/io/manifest.h"
#include "core/gan/gan.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/latent/autoencoder.h"
#include "core/networks/network.h"
#include "core/runtime/runtime.h"
#include "core/sampling/generate.h"
#include "core/sampling/sampler.h"
#ifdef DLAB_HAVE_IMAGING
#include "imaging/image_folder.h"
#include "imaging/image_io.h"
#endif

namespace dlab::app {

int cmd_sample(const std::vector<std::string>& argv) {
    Args args("sample");
    args.option("model", "default, a bundled name or a .safetensors file", "default")
        .option("class", "class index for every sample (default: cycle through the classes)")
        .flag("unconditional", "sample with the null class (no guidance)")
        .option("prompt", "text-to-image models: what to draw, e.g. \"a dark long sleeved pullover\"; several with ' | ' between them")
        .option("prompts", "text-to-image models: a file of prompts, one per line (samples cycle through them)")
        .option("negative-prompt", "text-to-image models: guidance pushes away from this prompt instead of the empty one")
        .option("guidance", "classifier-free guidance scale s (0 uncond, 1 cond, >1 guided)", "3")
        .option("classifier-scale", "classifier guidance scale c (0: off); with --guidance 0 it steers the unconditional path", "0")
        .option("noisy-classifier", "the noise-aware classifier for --classifier-scale", "fashion-mnist-noisy-classifier")
        .option("sampler", "ddpm, ddim or dpmpp2m", "ddim")
        .option("steps", "sampling steps", "50")
        .option("eta", "DDIM eta", "0")
        .option("spacing", "leading, trailing or linspace", "trailing")
        .flag("recommended", "the sampler, steps, guidance and timesteps that the model's manifest recommends (options given win)")
        .option("dynamic-threshold", "Imagen's dynamic thresholding of x0 at this percentile of |x0|, e.g. 0.995 (0: static clipping)", "0")
        .option("seed", "random seed", "0")
        .option("start-image", "start every chain from Fashion-MNIST test image N (a latent model: its latent) noised "
                "to --start-t, each with its own noise (SDEdit): variations of it, or with --class that item turned into "
                "another class; the classes default to the image's own")
        .option("start-t", "with --start-image: the noise level it starts from (the sampler's first timestep at or below it)", "500")
        .option("count", "number of samples", "16")
        .option("batch", "samples per forward pass", "256")
        .option("output", "grid PNG (also -o)")
        .option("tensors", "write images/labels (or points/labels) to a .safetensors file")
        .option("chain-video", "write the chain of the first batch (x_t at every step) as MP4")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .option("precision", precision_help(), "fp32")
        .flag("deterministic", "CUDA: no TF32, deterministic cuDNN (closer to CPU results)")
        .flag("bf16", "bf16 autocast of the network (CUDA)")
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
    // Output paths are checked before any work: a bad one fails now, not after sampling.
    // (option, the suffix its fixed format needs)
    for (const auto& [option, suffix] : {std::pair<const char*, const char*>{"output", ".png"}, {"tensors", nullptr}, {"chain-video", ".mp4"}})
        if (args.has(option))
            if (auto st = check_output_path(args.get(option), suffix); !st) return failure("sample: --" + std::string(option) + ": " + st.error());
    auto device = select_device(args.get("device"));
    if (!device) return failure("sample: " + device.error());
    if (int rc = apply_precision(args, device.value(), "sample"); rc >= 0) return rc;
    auto path = resolve_model(args.get("model"));
    if (!path) return failure("sample: " + path.error());
    if (args.given("start-t") && !args.given("start-image")) return usage("sample: --start-t goes with --start-image N");
    if (is_gan_file(path.value())) {
        if (args.given("start-image")) return usage("sample: --start-image needs a diffusion model; a GAN has no chain to start midway");
        // A GAN: one network evaluation per image; the sampler options do not apply.
        auto gan = load_gan(path.value(), device.value());
        if (!gan) return failure("sample: " + gan.error());
        const int64_t C = gan->config.num_classes, N = count.value();
        at::Tensor labels = at::arange(N, at::kLong).remainder(std::max<int64_t>(1, C));
        if (args.has("class")) {
            auto k = args.get_int("class", 0, std::max<int64_t>(1, C) - 1);
            if (!k) return usage(k.error());
            labels = at::full({N}, k.value(), at::kLong);
        }
        const auto t0 = std::chrono::steady_clock::now();
        const at::Tensor x = ((gan_generate(*gan->generator, N, labels, uint64_t(seed.value()), batch.value()).clamp(-1, 1) + 1) / 2).contiguous();
        if (!args.has("quiet"))
            std::fprintf(stderr, "%lld GAN samples (one step each) in %.3f s on %s\n", (long long)N,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), device->str().c_str());
        if (args.has("tensors")) {
            TensorFile f;
            f.tensors["images"] = x;
            f.tensors["labels"] = labels;
            f.metadata["model"] = path.value();
            f.metadata["seed"] = std::to_string(seed.value());
            if (auto st = save_safetensors(args.get("tensors"), f); !st) return failure("sample: " + st.error());
        }
#ifdef DLAB_HAVE_IMAGING
        if (args.has("output")) {
            const int64_t cols = C > 0 && !args.has("class") ? std::min<int64_t>(C, N) : int64_t(std::ceil(std::sqrt(double(N))));
            auto mat = imaging::tensor_to_mat(imaging::make_grid(x, cols, 2, 1.0));
            const std::string params = "model=" + args.get("model") + " gan seed=" + std::to_string(seed.value());
            if (auto st = imaging::write_png(args.get("output"), mat, {{"parameters", params}}); !st) return failure("sample: " + st.error());
        }
#endif
        return 0;
    }
    auto model = load_model(path.value(), device.value());
    if (!model) return failure("sample: " + model.error());
    const ModelConfig& mc = model->config;
    const int64_t C = mc.network.num_classes;
    const bool text = mc.network.context_dim > 0;
    std::vector<std::string> prompts;
    if (args.has("prompt")) {
        const std::string all = args.get("prompt");
        for (size_t from = 0;;) {
            const size_t bar = all.find('|', from);
            std::string p = all.substr(from, bar == std::string::npos ? std::string::npos : bar - from);
            const auto a = p.find_first_not_of(' '), b = p.find_last_not_of(' ');
            prompts.push_back(a == std::string::npos ? std::string() : p.substr(a, b - a + 1));
            if (bar == std::string::npos) break;
            from = bar + 1;
        }
    }
    if (args.has("prompts")) {
        auto file = read_prompt_file(args.get("prompts"));
        if (!file) return failure("sample: --prompts: " + file.error());
        prompts.insert(prompts.end(), file->begin(), file->end());
    }
    if (!text && (!prompts.empty() || args.has("negative-prompt")))
        return usage("sample: " + path.value() + " is not a text-to-image model; --prompt needs one (see `diffusionlab-cli models`)");
    if (text && args.has("class")) return usage("sample: a text-to-image model takes --prompt, not --class");
    if (text && prompts.empty() && !args.has("unconditional"))
        return usage("sample: " + path.value() + " is a text-to-image model: give --prompt \"...\" (or --unconditional)");
    // --start-image: the test image, checked (and its class read) before any work.
    at::Tensor start_image;
    int64_t start_class = -1;
    if (args.given("start-image")) {
        if (auto st = check_starts_from_fashion_mnist(model.value()); !st) return usage("sample: --start-image " + st.error());
        if (args.has("unconditional") && args.given("class")) return usage("sample: --unconditional and --class exclude each other");
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!test) return failure("sample: --start-image: " + test.error());
        auto k = args.get_int("start-image", 0, test->x.size(0) - 1);
        if (!k) return usage(k.error() + " (the Fashion-MNIST test images)");
        start_image = test->x.narrow(0, k.value(), 1);
        start_class = test->labels[k.value()].item<int64_t>();
    }
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
    sc.spacing = *spacing;
    double guidance = scale.value();
    if (args.has("recommended")) {
        // The manifest's sampling for every option not given on the command line.
        auto manifest = read_manifest(path.value());
        if (!manifest) return failure("sample: --recommended: " + manifest.error());
        if (!manifest->recommended) return usage("sample: --recommended: " + path.value() + ": its manifest recommends no sampling");
        const RecommendedSampling& r = *manifest->recommended;
        const auto k = parse_sampler_kind(r.sampler);
        if (!k) return failure("sample: --recommended: the manifest names an unknown sampler '" + r.sampler + "'");
        if (!args.given("sampler")) sc.kind = *k;
        if (!args.given("steps")) sc.steps = r.steps;
        if (!args.given("guidance")) guidance = r.guidance;
        if (!args.given("spacing") && !r.spacing.empty()) sc.spacing = *parse_timestep_spacing(r.spacing);
        if (!args.has("quiet"))
            std::fprintf(stderr, "sampling as the manifest recommends: %s, %lld steps, %s timesteps, s = %g\n", to_string(sc.kind).c_str(),
                         (long long)sc.steps, to_string(sc.spacing).c_str(), guidance);
    }
    sc.eta = sc.kind == SamplerKind::Ddpm ? 1.0 : eta.value();
    // Images live in [-1, 1]; the 2-D toy sets within about [-4, 4].
    sc.clip_x0 = true;
    sc.clip_value = mc.network.kind == NetworkKind::UNet ? 1.0 : 5.0;
    auto dyn = args.get_double("dynamic-threshold", 0.0, 1.0);
    if (!dyn) return usage(dyn.error());
    sc.dynamic_threshold = dyn.value();
    auto probe = make_sampler(schedule.value(), sc);
    if (!probe) return usage("sample: " + probe.error());

    const int64_t N = count.value();
    at::Tensor labels = at::arange(N, at::kLong);
    if (C > 0) labels = fixed_class >= 0 ? at::full({N}, fixed_class, at::kLong) : labels.remainder(C);
    if (start_image.defined() && fixed_class < 0 && C > 0) labels = at::full({N}, start_class, at::kLong);
    if (args.has("unconditional") && C > 0) labels = at::full({N}, C, at::kLong);
    GenerateRequest req;
    req.sampler = sc;
    req.labels = C > 0 ? labels : at::Tensor();
    req.count = N;
    req.guidance = guidance;
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
    if (text) {
        if (args.has("unconditional")) {
            labels = at::zeros({N}, at::kLong);  // the null prompt
            req.labels = labels;
        } else {
            if (auto st = attach_prompts(model.value(), prompts, args.get("negative-prompt"), req); !st)
                return usage("sample: " + st.error());
            labels = req.labels - 1;  // the prompt index of each sample
        }
    }
    req.seed = static_cast<uint64_t>(seed.value());
    req.batch = batch.value();
    req.bf16 = args.has("bf16");
    int64_t start_t_used = -1;
    if (start_image.defined()) {
        auto t = args.get_int("start-t", 0, mc.schedule.timesteps - 1);
        if (!t) return usage(t.error() + " (the model's timesteps)");
        // Each chain its own noise, drawn from the seed (the same seed: the same variations).
        auto started = start_from_image(req, model.value(), schedule.value(), start_image, N,
                                        static_cast<uint64_t>(seed.value()), t.value());
        if (!started) return usage("sample: --start-t: " + started.error());
        start_t_used = started.value();
        if (!args.has("quiet"))
            std::fprintf(stderr, "starting from test image %s (class %lld) noised to t = %lld: the last %lld of %lld sampler steps\n",
                         args.get("start-image").c_str(), (long long)start_class, (long long)started.value(),
                         (long long)(sc.steps - req.start_step), (long long)sc.steps);
    }
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
    if (!out) return failure("sample: " + path.value() + ": " + out.error() + " (nothing was written)");
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
        f.metadata["spacing"] = to_string(sc.spacing);
        f.metadata["guidance"] = std::to_string(guidance);
        f.metadata["seed"] = std::to_string(seed.value());
        if (start_image.defined()) {
            f.metadata["start_image"] = args.get("start-image");
            f.metadata["start_t"] = std::to_string(start_t_used);
        }
        if (text) f.metadata["prompts"] = nlohmann::json(prompts).dump();
        if (text && args.has("negative-prompt")) f.metadata["negative_prompt"] = args.get("negative-prompt");
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
        const int64_t P = static_cast<int64_t>(prompts.size());
        const int64_t cols = text && P > 1 ? std::min<int64_t>(P, N)
                             : C > 0 && fixed_class < 0 && !start_image.defined() ? std::min<int64_t>(C, N)
                                                                                   : int64_t(std::ceil(std::sqrt(double(N))));
        const at::Tensor grid = imaging::make_grid(x, cols, 2, 1.0);
        std::ostringstream params;
        params << "model=" << args.get("model") << " sampler=" << to_string(sc.kind) << " steps=" << sc.steps
               << " spacing=" << to_string(sc.spacing) << " eta=" << sc.eta << " guidance=" << guidance
               << " classifier_scale=" << cscale.value()
               << " seed=" << seed.value()
               << " class=" << (fixed_class >= 0 ? std::to_string(fixed_class)
                                : start_image.defined() ? std::to_string(start_class) : std::string("cycle"));
        if (start_image.defined()) params << " start_image=" << args.get("start-image") << " start_t=" << start_t_used;
        if (text) {
            params << " prompts=";
            for (size_t i = 0; i < prompts.size(); ++i) params << (i ? " | " : "") << prompts[i];
            if (args.has("negative-prompt")) params << " negative=" << args.get("negative-prompt");
        }
        auto mat = imaging::tensor_to_mat(grid);
        if (auto st = imaging::write_png(args.get("output"), mat, {{"parameters", params.str()}}); !st)
            return failure("sample: " + st.error());
    }
#endif
    return 0;
}

}  // namespace dlab::app
