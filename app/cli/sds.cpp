// diffusionlab-cli sds: score distillation sampling (DreamFusion) with a frozen class-conditional
// model: an image optimised directly (shown beside an ancestral sample of the same class), or with
// --3d a voxel scene rendered from random azimuths, written as a turntable.
#include "app/cli/commands.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/distillation/sds_run.h"
#include "core/evaluation/classifier.h"
#include "core/io/atomic_file.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/runtime/runtime.h"
#include "core/sampling/generate.h"
#ifdef DLAB_HAVE_IMAGING
#include "imaging/image_io.h"
#endif

namespace dlab::app {

int cmd_sds(const std::vector<std::string>& argv) {
    Args args("sds");
    args.option("model", "a class-conditional image model", "default")
        .option("class", "the class to distil", "0")
        .flag("3d", "optimise a voxel scene (density and brightness) rendered from random azimuths")
        .option("steps", "optimiser steps", "500")
        .option("guidance", "classifier-free scale s (DreamFusion: 100)", "100")
        .option("lr", "Adam learning rate", "0.03")
        .option("views", "--3d: azimuths rendered per step", "4")
        .option("t-range", "the range of t / T drawn", "0.02,0.98")
        .option("compare", "ancestral samples of the class drawn beside the result (DDPM 100, s = 3; 0: none)", "4")
        .option("seed", "random seed", "0")
        .option("log-every", "steps between progress lines (and loss.csv rows)", "50")
        .option("output", "PNG: the SDS image beside an ancestral sample of the class; --3d: the turntable's frames (also -o)")
        .option("video", "--3d: the turntable as MP4 (24 azimuths)")
        .option("tensors", "write the result (image or turntable frames) to a .safetensors file")
        .option("loss-csv", "write step, pseudo-loss and the classifier's p(class) per log step")
        .option("classifier", "scores the result: p(class | image) of the feature classifier", "fashion-mnist-classifier")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "sds --class K [--3d] --steps N -o OUT.png"); rc >= 0) return rc;
    auto steps = args.get_int("steps", 1, 10000000);
    auto guidance = args.get_double("guidance", 0.0, 10000.0);
    auto lr = args.get_double("lr", 1e-6, 10.0);
    auto views = args.get_int("views", 1, 256);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    auto every = args.get_int("log-every", 1, 10000000);
    auto klass = args.get_int("class", 0, 100000);
    auto trange = args.get_double_list("t-range", 0.0, 1.0);
    auto compare = args.get_int("compare", 0, 64);
    if (!compare) return usage(compare.error());
    for (const std::string* e : {&steps.error(), &guidance.error(), &lr.error(), &views.error(), &seed.error(), &every.error(),
                                 &klass.error(), &trange.error()})
        if (!e->empty()) return usage(*e);
    if (trange->size() != 2 || !(trange.value()[0] < trange.value()[1])) return usage("sds: --t-range must be two numbers LO,HI with LO < HI");
    if (!args.has("output") && !args.has("tensors") && !args.has("video"))
        return usage("sds: give -o OUT.png, --video TURNTABLE.mp4 and/or --tensors FILE");
#ifndef DLAB_HAVE_IMAGING
    if (args.has("output") || args.has("video")) return usage("sds: this build has no OpenCV imaging; use --tensors");
#endif
    const bool three_d = args.has("3d");
    if (args.has("video") && !three_d) return usage("sds: --video is the turntable of --3d");
    for (const auto& [o, suffix] : {std::pair<const char*, const char*>{"output", ".png"}, {"video", ".mp4"}, {"tensors", nullptr}, {"loss-csv", nullptr}})
        if (args.has(o))
            if (auto st = check_output_path(args.get(o), suffix); !st) return failure("sds: --" + std::string(o) + ": " + st.error());
    auto device = select_device(args.get("device"));
    if (!device) return failure("sds: " + device.error());
    auto path = resolve_model(args.get("model"));
    if (!path) return failure("sds: " + path.error());
    auto model = load_model(path.value(), device.value());
    if (!model) return failure("sds: " + model.error());
    SdsRunConfig rc;
    rc.label = klass.value();
    rc.three_d = three_d;
    rc.sds.guidance = guidance.value();
    rc.sds.t_lo = trange.value()[0];
    rc.sds.t_hi = trange.value()[1];
    rc.lr = lr.value();
    rc.views = views.value();
    rc.seed = static_cast<uint64_t>(seed.value());
    auto run = SdsRun::create(model.value(), rc);
    if (!run) return usage(run.error());
    // The classifier's belief that the result is the class: a score the model was not trained on.
    Classifier clf{nullptr};
    if (auto cp = resolve_model(args.get("classifier")))
        if (auto c = load_classifier(cp.value(), device.value())) clf = c.value();
    auto p_class = [&](const at::Tensor& images) -> double {
        if (!clf) return std::nan("");
        torch::NoGradGuard g;
        return at::softmax(clf->forward(images.to(device.value())), 1).select(1, rc.label).mean().item<double>();
    };
    auto turntable = [&](int frames) {
        std::vector<at::Tensor> out;
        for (int i = 0; i < frames; ++i) out.push_back(run.value()->view(2 * M_PI * i / frames));
        return at::cat(out, 0);
    };
    const std::string name = klass.value() < int64_t(model->config.class_names.size()) ? model->config.class_names[size_t(klass.value())]
                                                                                       : std::to_string(klass.value());
    std::fprintf(stderr, "sds: %s, class %lld (%s), guidance %.1f, t in [%.2f, %.2f] T, w(t) = 1 - abar_t, Adam lr %g%s, %s\n",
                 three_d ? "a 28^3 voxel scene (density, brightness) rendered from random azimuths" : "an image optimised directly",
                 (long long)rc.label, name.c_str(), rc.sds.guidance, rc.sds.t_lo, rc.sds.t_hi, rc.lr,
                 three_d ? (", " + std::to_string(rc.views) + " views per step").c_str() : "", device->str().c_str());
    std::string csv = "step,pseudo_loss,p_class\n";
    double window = 0;
    int64_t in_window = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 1; s <= steps.value(); ++s) {
        double l = 0;
        try {
            l = run.value()->step();
        } catch (const std::exception& e) {
            return failure("sds: step " + std::to_string(s) + ": " + error_message(e));
        }
        if (!std::isfinite(l)) return failure("sds: the pseudo-loss became non-finite at step " + std::to_string(s) + " (try a lower --lr)");
        window += l;
        ++in_window;
        if (s % every.value() == 0 || s == steps.value()) {
            const double p = p_class(three_d ? turntable(8) : run.value()->image());
            std::fprintf(stderr, "step %lld/%lld  pseudo-loss %.4f  p(%s) %.3f  %.1f s\n", (long long)s, (long long)steps.value(),
                         window / in_window, name.c_str(), p,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            csv += std::to_string(s) + "," + std::to_string(window / in_window) + "," + std::to_string(p) + "\n";
            window = 0;
            in_window = 0;
        }
    }
    if (args.has("loss-csv"))
        if (auto st = write_file_atomic(args.get("loss-csv"), csv); !st) return failure("sds: " + st.error());
    const at::Tensor result = three_d ? turntable(24) : run.value()->image();  // [F, 1, S, S] or [1, 1, S, S]
    if (!at::isfinite(result).all().item<bool>()) return failure("sds: the result is not finite; nothing was written");
    // The same class sampled the ordinary way (DDPM 100 steps, s = 3), for comparison.
    at::Tensor ancestral;
    if (compare.value() > 0) {
        GenerateRequest req;
        req.sampler.kind = SamplerKind::Ddpm;
        req.sampler.steps = 100;
        req.sampler.eta = 1.0;
        req.count = compare.value();
        req.guidance = 3.0;
        req.labels = at::full({compare.value()}, rc.label, at::kLong);
        req.seed = rc.seed;
        auto a = generate(model.value(), req);
        if (!a) return failure("sds: " + a.error());
        ancestral = a.value();
    }
    std::fprintf(stderr, "p(%s): SDS %s %.3f; saturated pixels %.3f", name.c_str(), three_d ? "turntable" : "image", p_class(result),
                 (result.abs() >= 0.99).to(at::kFloat).mean().item<double>());
    if (ancestral.defined())
        std::fprintf(stderr, "; ancestral sampling (DDPM 100, s = 3): p %.3f, saturated %.3f", p_class(ancestral),
                     (ancestral.abs() >= 0.99).to(at::kFloat).mean().item<double>());
    std::fprintf(stderr, "\n");
    if (args.has("tensors")) {
        TensorFile f;
        f.tensors[three_d ? "turntable" : "image"] = result.contiguous();
        if (ancestral.defined()) f.tensors["ancestral"] = ancestral.contiguous();
        f.metadata["model"] = path.value();
        f.metadata["class"] = std::to_string(rc.label);
        f.metadata["guidance"] = std::to_string(rc.sds.guidance);
        if (auto st = save_safetensors(args.get("tensors"), f); !st) return failure("sds: " + st.error());
    }
#ifdef DLAB_HAVE_IMAGING
    const at::Tensor shown = (result.clamp(-1, 1) + 1) / 2;
    const at::Tensor anc = ancestral.defined() ? (ancestral.clamp(-1, 1) + 1) / 2 : shown.narrow(0, 0, 0);
    if (args.has("output")) {
        // 2-D: the SDS image, then the 4 ancestral samples; 3-D: the turntable's 24 frames in rows of 8.
        const at::Tensor grid = three_d ? imaging::make_grid(shown, 8, 2, 1.0) : imaging::make_grid(at::cat({shown, anc}, 0), 1 + anc.size(0), 2, 1.0);
        const std::string params = "model=" + args.get("model") + " sds class=" + std::to_string(rc.label) +
                                   " guidance=" + std::to_string(rc.sds.guidance) + " steps=" + std::to_string(steps.value()) +
                                   (three_d ? " 3d turntable" : " left: SDS, right: ancestral DDPM 100 s=3");
        if (auto st = imaging::write_png(args.get("output"), imaging::tensor_to_mat(grid), {{"parameters", params}}); !st)
            return failure("sds: " + st.error());
    }
    if (args.has("video")) {
        std::vector<at::Tensor> frames;
        for (int64_t i = 0; i < shown.size(0); ++i) frames.push_back(shown[i]);
        if (auto st = imaging::write_video(args.get("video"), frames, 12.0, 8); !st) return failure("sds: " + st.error());
    }
#endif
    return 0;
}

}  // namespace dlab::app
