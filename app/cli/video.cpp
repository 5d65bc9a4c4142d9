// diffusionlab-cli video: video diffusion on moving Fashion-MNIST clips (core/video): train a
// space-time factorised UNet, sample clips of a class moving in a direction, and score them against
// the real clips with the same measures (per-frame class agreement, class consistency across the
// frames of a clip, motion accuracy from the centroid tracker).
#include "app/cli/commands.h"

#include <atomic>
#include <chrono>
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/evaluation/classifier.h"
#include "core/evaluation/metrics.h"
#include "core/io/atomic_file.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/runtime/runtime.h"
#include "core/sampling/generate.h"
#include "core/training/trainer.h"
#include "core/video/moving_fashion.h"
#ifdef DLAB_HAVE_IMAGING
#include "imaging/image_io.h"
#endif

namespace dlab::app {

namespace {

// Clip measures: per-frame agreement with the asked class, consistency (every frame of a clip the
// same predicted class), motion accuracy (the tracker's direction is the asked one).
struct ClipScores {
    double agreement = 0, consistency = 0, motion = 0;
    at::Tensor features;  ///< [B*T, 256] the classifier's features of every frame's item window (for FID)
};
// Each frame's item as the classifier sees images: the `item` x `item` window around the frame's
// centroid (inside the canvas), scaled back to 28 x 28.
at::Tensor item_crops(const at::Tensor& clips, int64_t item) {
    const int64_t B = clips.size(0), T = clips.size(1), C = clips.size(2), S = clips.size(3);
    const at::Tensor frames = clips.reshape({B * T, C, S, S}).to(at::kCPU, at::kFloat);
    const at::Tensor centre = frame_centroids(clips.to(at::kCPU)).reshape({B * T, 2});
    std::vector<at::Tensor> crops;
    for (int64_t i = 0; i < B * T; ++i) {
        const int64_t k = std::min(item, S);
        const int64_t r = std::clamp<int64_t>(std::llround(centre[i][0].item<double>() - (k - 1) / 2.0), 0, S - k);
        const int64_t c = std::clamp<int64_t>(std::llround(centre[i][1].item<double>() - (k - 1) / 2.0), 0, S - k);
        crops.push_back(frames[i].narrow(1, r, k).narrow(2, c, k));
    }
    return at::upsample_bilinear2d(at::stack(crops), {28, 28}, false).clamp(-1, 1);
}

ClipScores score_clips(Classifier& clf, const at::Tensor& clips, const at::Tensor& classes, const at::Tensor& directions,
                       int64_t item, c10::Device device) {
    torch::NoGradGuard g;
    const int64_t B = clips.size(0), T = clips.size(1);
    const at::Tensor frames = item_crops(clips, item);
    std::vector<at::Tensor> preds, feats;
    for (int64_t s = 0; s < frames.size(0); s += 1024) {
        const at::Tensor f = clf->features(frames.narrow(0, s, std::min<int64_t>(1024, frames.size(0) - s)).to(device));
        feats.push_back(f.cpu());
        preds.push_back(clf->head(f).argmax(1).cpu());
    }
    const at::Tensor p = at::cat(preds).view({B, T});
    ClipScores s;
    s.features = at::cat(feats);
    s.agreement = (p == classes.view({B, 1})).to(at::kFloat).mean().item<double>();
    s.consistency = (p == p.select(1, 0).unsqueeze(1)).all(1).to(at::kFloat).mean().item<double>();
    s.motion = (estimate_motion(clips).directions == directions).to(at::kFloat).mean().item<double>();
    return s;
}

Result<MovingConfig> moving_config(const Args& args) {
    MovingConfig c;
    auto f = args.get_int("frames", 2, 256), s = args.get_int("canvas", 8, 512), i = args.get_int("item", 4, 512);
    for (const std::string* e : {&f.error(), &s.error(), &i.error()})
        if (!e->empty()) return Error{*e};
    c.frames = f.value();
    c.canvas = s.value();
    c.item = i.value();
    if (auto st = c.validate(); !st) return Error{st.error()};
    return c;
}

}  // namespace

int cmd_video(const std::vector<std::string>& argv) {
    const std::string sub = argv.empty() ? std::string() : argv.front();
    if (sub != "train" && sub != "sample" && sub != "eval")
        return usage("video: say what to do: video train|sample|eval [OPTIONS] (--help after it lists them)");
    const std::vector<std::string> rest(argv.begin() + 1, argv.end());
    Args args("video " + sub);
    args.option("frames", "frames per clip", "16").option("canvas", "canvas side", "48").option("item", "item side", "20")
        .option("device", "auto, cpu, cuda or cuda:N", "auto").option("seed", "random seed", "0");
    if (sub == "train")
        args.option("out", "run folder").option("steps", "optimisation steps", "20000").option("batch", "clips per step", "16")
            .option("lr", "learning rate", "3e-4").option("base-channels", "UNet channels", "32")
            .option("max-minutes", "stop (with a checkpoint) after this much wall time", "0")
            .option("prediction", "what the network predicts: eps, v or x0 (v keeps the first steps' x0 usable)", "v")
            .option("min-snr", "min-SNR-gamma loss weighting (0: off)", "0")
            .option("log-every", "steps between progress lines", "200").option("checkpoint-every", "steps between checkpoints", "2000")
            .flag("bf16", "bf16 autocast (CUDA)").flag("resume", "continue OUT's run").flag("overwrite", "replace OUT's run");
    else
        args.option("model", "a video model", "fashion-mnist-video").option("count", "clips", sub == "eval" ? "800" : "8")
            .option("class", "sample: the class of every clip (default: cycle)").option("direction", "sample: 0-7 (E, NE, N, ...; default: cycle)")
            .option("guidance", "classifier-free scale", "3").option("sampler", "ddpm, ddim or dpmpp2m", "ddim")
            .option("steps", "sampler steps", "50").option("batch", "clips per chain", "32")
            .option("tensors", "write the clips to a .safetensors file").option("output", "PNG: one row of frames per clip (also -o)")
            .option("json", "eval: also write the results as JSON").option("classifier", "eval: the frame classifier", "fashion-mnist-classifier");
    args.flag("help", "show this help");
    if (int rc = parse_or_help(args, rest, "video " + sub + " [OPTIONS]"); rc >= 0) return rc;
    auto mcfg = moving_config(args);
    if (!mcfg) return usage("video: " + mcfg.error());
    auto seed = args.get_int("seed", 0, INT64_MAX);
    if (!seed) return usage(seed.error());
    auto device = select_device(args.get("device"));
    if (!device) return failure("video: " + device.error());
    auto items = load_fashion_mnist(fashion_mnist_dir(), sub == "train");
    if (!items) return failure("video: " + items.error());

    if (sub == "train") {
        if (!args.has("out")) return usage("video train: --out DIR is required");
        auto steps = args.get_int("steps", 1, 100000000), batch = args.get_int("batch", 1, 4096), base = args.get_int("base-channels", 8, 512);
        auto le = args.get_int("log-every", 1, 100000000), ce = args.get_int("checkpoint-every", 1, 100000000);
        auto lr = args.get_double("lr", 1e-8, 1.0), mm = args.get_double("max-minutes", 0, 1e7);
        auto msnr = args.get_double("min-snr", 0.0, 1e6);
        for (const std::string* e : {&steps.error(), &batch.error(), &base.error(), &le.error(), &ce.error(), &lr.error(), &mm.error(), &msnr.error()})
            if (!e->empty()) return usage(*e);
        const auto prediction = parse_prediction_type(args.get("prediction"));
        if (!prediction) return usage("video train: unknown prediction '" + args.get("prediction") + "' (eps, v or x0)");
        ModelConfig mc;
        mc.network.image_size = mcfg->canvas;
        mc.network.base_channels = base.value();
        mc.network.channel_mult = {1, 2, 2};
        mc.network.attention_resolutions = {mcfg->canvas / 4};  // spatial and temporal attention at the coarse level and the middle
        mc.network.num_classes = kVideoLabels;
        mc.network.frames = mcfg->frames;
        mc.class_names.clear();
        mc.prediction = *prediction;
        TrainConfig tc;
        tc.min_snr_gamma = msnr.value();
        tc.steps = steps.value();
        tc.batch = batch.value();
        tc.lr = lr.value();
        tc.log_every = le.value();
        tc.checkpoint_every = ce.value();
        tc.bf16 = args.has("bf16");
        tc.seed = static_cast<uint64_t>(seed.value());
        VideoTraining video{moving_clip_source(items.value(), mcfg.value(), tc.seed)};
        TrainHooks hooks;
        hooks.video = &video;
        std::atomic<bool> stop{false};
        hooks.cancel = &stop;
        const auto t0 = std::chrono::steady_clock::now();
        const double budget = mm.value() * 60;
        hooks.on_progress = [&](const TrainProgress& p) {
            if (budget > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > budget) stop = true;
            std::fprintf(stderr, "step %lld/%lld  loss %.5f  %.0f clips/s\n", (long long)p.step, (long long)p.total, p.loss, p.images_per_s);
        };
        LabelledData named = items.value();
        named.name = "moving-fashion-mnist (" + std::to_string(mcfg->frames) + " frames of " + std::to_string(mcfg->canvas) + "x" +
                     std::to_string(mcfg->canvas) + ", items " + std::to_string(mcfg->item) + " px)";
        named.class_names.clear();
        for (int64_t c = 0; c < kVideoClasses; ++c)
            for (int d = 0; d < kMotionDirections; ++d)
                named.class_names.push_back(items->class_names.at(size_t(c)) + " moving " + motion_direction_names()[size_t(d)]);
        std::fprintf(stderr, "video train: %s, UNet base %lld with temporal attention, %lld clips per step, %s\n", named.name.c_str(),
                     (long long)base.value(), (long long)tc.batch, device->str().c_str());
        const TrainStart start = args.has("resume") ? TrainStart::Resume : args.has("overwrite") ? TrainStart::Overwrite : TrainStart::New;
        auto r = train(mc, tc, named, device.value(), args.get("out"), start, hooks);
        if (!r) return failure(r.error());
        std::fprintf(stderr, "done: %lld steps, %.0f s, %.1f clips/s; model in %s/model.safetensors\n", (long long)r->steps_done,
                     r->seconds, r->images_per_s, args.get("out").c_str());
        return 0;
    }

    auto count = args.get_int("count", 1, 100000), steps = args.get_int("steps", 1, 10000), batch = args.get_int("batch", 1, 4096);
    auto scale = args.get_double("guidance", 0, 1000);
    for (const std::string* e : {&count.error(), &steps.error(), &batch.error(), &scale.error()})
        if (!e->empty()) return usage(*e);
    const auto kind = parse_sampler_kind(args.get("sampler"));
    if (!kind) return usage("video: unknown sampler '" + args.get("sampler") + "' (ddpm, ddim or dpmpp2m)");
    for (const auto& [o, suffix] : {std::pair<const char*, const char*>{"tensors", nullptr}, {"output", ".png"}, {"json", nullptr}})
        if (args.has(o))
            if (auto st = check_output_path(args.get(o), suffix); !st) return failure("video: --" + std::string(o) + ": " + st.error());
    auto path = resolve_model(args.get("model"));
    if (!path) return failure("video: " + path.error());
    auto model = load_model(path.value(), device.value());
    if (!model) return failure("video: " + model.error());
    const int64_t T = model->config.network.frames, S = model->config.network.image_size, N = count.value();
    if (T < 1 || model->config.network.num_classes != kVideoLabels)
        return usage("video: " + path.value() + " is not a video model of moving Fashion-MNIST");
    at::Tensor classes = at::arange(N, at::kLong).remainder(kVideoClasses);
    at::Tensor dirs = at::arange(N, at::kLong).div(kVideoClasses, "floor").remainder(kMotionDirections);
    if (args.has("class")) {
        auto k = args.get_int("class", 0, kVideoClasses - 1);
        if (!k) return usage(k.error());
        classes.fill_(k.value());
    }
    if (args.has("direction")) {
        auto d = args.get_int("direction", 0, kMotionDirections - 1);
        if (!d) return usage(d.error());
        dirs.fill_(d.value());
    }
    GenerateRequest req;
    req.sampler.kind = *kind;
    req.sampler.steps = steps.value();
    req.count = N * T;
    req.batch = batch.value() * T;  // whole clips per chain
    req.guidance = scale.value();
    req.labels = (classes * kMotionDirections + dirs).repeat_interleave(T);
    req.seed = static_cast<uint64_t>(seed.value());
    const auto t0 = std::chrono::steady_clock::now();
    auto out = generate(model.value(), req);
    if (!out) return failure("video: " + out.error());
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const at::Tensor clips = out->view({N, T, model->config.network.in_channels, S, S});
    std::fprintf(stderr, "%lld clips of %lld frames in %.2f s on %s\n", (long long)N, (long long)T, secs, device->str().c_str());
    if (args.has("tensors")) {
        TensorFile f;
        f.tensors["clips"] = ((clips.clamp(-1, 1) + 1) / 2).contiguous();
        f.tensors["classes"] = classes;
        f.tensors["directions"] = dirs;
        if (auto st = save_safetensors(args.get("tensors"), f); !st) return failure("video: " + st.error());
    }
#ifdef DLAB_HAVE_IMAGING
    if (args.has("output")) {
        const at::Tensor grid = imaging::make_grid((clips.clamp(-1, 1) + 1).reshape({N * T, 1, S, S}) / 2, T, 1, 1.0);
        if (auto st = imaging::write_png(args.get("output"), imaging::tensor_to_mat(grid), {{"parameters", "video " + path.value()}}); !st)
            return failure("video: " + st.error());
    }
#else
    if (args.has("output")) return usage("video: this build has no OpenCV imaging; use --tensors");
#endif
    if (sub == "sample") return 0;
    // eval: the same measures on real clips of the same classes and directions (the floor).
    auto cpath = resolve_model(args.get("classifier"));
    if (!cpath) return failure("video: classifier: " + cpath.error());
    auto clf = load_classifier(cpath.value(), device.value());
    if (!clf) return failure("video: " + clf.error());
    MovingConfig real_cfg = mcfg.value();
    real_cfg.frames = T;
    real_cfg.canvas = S;
    auto real = make_moving_clips(items.value(), real_cfg, 12345, 0, N);
    if (!real) return failure("video: " + real.error());
    const ClipScores gen = score_clips(clf.value(), clips.clamp(-1, 1), classes, dirs, real_cfg.item, device.value());
    const ClipScores flo = score_clips(clf.value(), real->clips, real->classes, real->directions, real_cfg.item, device.value());
    // Per-frame FID against the real clips' frames; its floor: a second set of real clips (other
    // items, positions and directions) against the same reference.
    auto other = make_moving_clips(items.value(), real_cfg, 54321, 0, N);
    if (!other) return failure("video: " + other.error());
    const ClipScores oth = score_clips(clf.value(), other->clips, other->classes, other->directions, real_cfg.item, device.value());
    const FeatureStats ref = feature_stats(flo.features);
    const double fid_gen = frechet_distance(feature_stats(gen.features), ref);
    const double fid_floor = frechet_distance(feature_stats(oth.features), ref);
    std::printf("video eval: %s, %lld clips of %lld frames, %s %lld, s = %.1f (test-split items for the real clips)\n",
                path.value().c_str(), (long long)N, (long long)T, to_string(*kind).c_str(), (long long)steps.value(), scale.value());
    std::printf("  %-22s %10s %12s %8s %10s\n", "", "agreement", "consistency", "motion", "frame FID");
    std::printf("  %-22s %10.3f %12.3f %8.3f %10.2f\n", "generated", gen.agreement, gen.consistency, gen.motion, fid_gen);
    std::printf("  %-22s %10.3f %12.3f %8.3f %10.2f\n", "real clips (floor)", flo.agreement, flo.consistency, flo.motion, fid_floor);
    std::printf("  agreement: frames the classifier gives the asked class (the item's window around the frame's centroid,\n"
                "  scaled to 28x28); consistency: clips whose frames all get one class;\n"
                "  motion: clips whose centroid moves (frames 0 -> 4) in the asked direction (chance 0.125);\n"
                "  frame FID: the classifier's features of every frame's item window against those of the real clips\n"
                "  (the floor row: a second set of real clips; frames of one clip are alike, so both run high at small N)\n");
    if (args.has("json")) {
        nlohmann::json j{{"model", path.value()}, {"clips", N}, {"frames", T}, {"guidance", scale.value()}, {"sampler", to_string(*kind)}, {"steps", steps.value()},
                         {"generated", {{"agreement", gen.agreement}, {"consistency", gen.consistency}, {"motion", gen.motion}, {"frame_fid", fid_gen}}},
                         {"real", {{"agreement", flo.agreement}, {"consistency", flo.consistency}, {"motion", flo.motion}, {"frame_fid", fid_floor}}},
                         {"seconds", secs}};
        if (auto st = write_file_atomic(args.get("json"), j.dump(2)); !st) return failure("video: " + st.error());
    }
    return 0;
}

}  // namespace dlab::app
