// diffusionlab-cli train-gan: a class-conditional GAN (one big step) with the run-folder
// conventions of `train`: checkpoint, --resume, --overwrite, --max-minutes, NaN stop, loss.csv.
#include "app/cli/commands.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/data/datasets.h"
#include "core/gan/gan_trainer.h"
#include "core/io/safetensors.h"
#include "core/runtime/runtime.h"

namespace dlab::app {

int cmd_train_gan(const std::vector<std::string>& argv) {
    Args args("train-gan");
    args.option("out", "the run folder (checkpoint.safetensors, model.safetensors, loss.csv)")
        .option("dataset", "fashion-mnist", "fashion-mnist")
        .option("steps", "optimisation steps (one discriminator and one generator update each)", "20000")
        .option("batch", "batch size", "128")
        .option("lr-g", "generator learning rate", "2e-4")
        .option("lr-d", "discriminator learning rate", "2e-4")
        .option("ema", "EMA decay of the generator", "0.999")
        .option("z-dim", "latent size", "64")
        .option("base-channels", "channels of the narrowest layer (the widest has 4x)", "64")
        .option("seed", "random seed", "0")
        .option("checkpoint-every", "steps between checkpoints", "1000")
        .option("log-every", "steps between log rows (losses, discriminator accuracy, diversity)", "100")
        .option("max-minutes", "stop (with a checkpoint) after this much wall time; resume later", "0")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("resume", "continue from OUT/checkpoint.safetensors (its GAN; options given here change the training)")
        .flag("overwrite", "replace the run already in OUT")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "train-gan --out DIR [OPTIONS]"); rc >= 0) return rc;
    if (!args.has("out")) return usage("train-gan: --out DIR is required");
    auto steps = args.get_int("steps", 1, 100000000);
    auto batch = args.get_int("batch", 2, 65536);
    auto lr_g = args.get_double("lr-g", 1e-7, 1.0);
    auto lr_d = args.get_double("lr-d", 1e-7, 1.0);
    auto ema = args.get_double("ema", 0.0, 0.99999);
    auto zdim = args.get_int("z-dim", 1, 1024);
    auto base = args.get_int("base-channels", 4, 512);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    auto ce = args.get_int("checkpoint-every", 1, 100000000);
    auto le = args.get_int("log-every", 1, 100000000);
    auto max_minutes = args.get_double("max-minutes", 0.0, 1e7);
    for (const std::string* e : {&steps.error(), &batch.error(), &lr_g.error(), &lr_d.error(), &ema.error(), &zdim.error(),
                                 &base.error(), &seed.error(), &ce.error(), &le.error(), &max_minutes.error()})
        if (!e->empty()) return usage(*e);
    if (args.get("dataset") != "fashion-mnist") return usage("train-gan: unknown dataset '" + args.get("dataset") + "' (fashion-mnist)");
    if (args.has("resume") && args.has("overwrite")) return usage("train-gan: --resume and --overwrite exclude each other");
    auto device = select_device(args.get("device"));
    if (!device) return failure("train-gan: " + device.error());
    auto data = load_fashion_mnist(fashion_mnist_dir(), true);
    if (!data) return failure("train-gan: " + data.error());

    GanConfig gc;
    gc.image_size = data->x.size(2);
    gc.channels = data->x.size(1);
    gc.num_classes = data->num_classes;
    gc.z_dim = zdim.value();
    gc.base_channels = base.value();
    GanTrainConfig tc;
    const bool resume = args.has("resume");
    if (resume) {
        // The checkpoint's own GAN and training settings; only options given here change the training.
        const std::string ckpt = args.get("out") + "/checkpoint.safetensors";
        auto file = load_safetensors(ckpt);
        if (!file) return failure("train-gan: --resume: " + file.error());
        const auto meta = file->metadata.find("dlab_gan");
        if (meta == file->metadata.end()) return failure("train-gan: --resume: " + ckpt + " is not a GAN checkpoint");
        const auto j = nlohmann::json::parse(meta->second, nullptr, false);
        if (j.is_discarded() || !j.contains("gan")) return failure("train-gan: --resume: " + ckpt + ": damaged metadata");
        auto saved = gan_config_from_json(j["gan"]);
        if (!saved) return failure("train-gan: --resume: " + saved.error());
        gc = saved.value();
        if (j.contains("training") && j["training"].is_object()) tc = gan_train_config_from_json(j["training"]);
    }
    auto use = [&](const char* name) { return !resume || args.given(name); };
    if (use("steps")) tc.steps = steps.value();
    if (use("batch")) tc.batch = batch.value();
    if (use("lr-g")) tc.lr_g = lr_g.value();
    if (use("lr-d")) tc.lr_d = lr_d.value();
    if (use("ema")) tc.ema_decay = ema.value();
    if (use("seed")) tc.seed = uint64_t(seed.value());
    if (use("checkpoint-every")) tc.checkpoint_every = ce.value();
    if (use("log-every")) tc.log_every = le.value();
    std::cerr << "training a GAN (z " << gc.z_dim << ", base " << gc.base_channels << " channels, " << gc.num_classes
              << " classes) on " << data->name << " (" << data->x.size(0) << " images), device " << device->str() << "\n";
    std::atomic<bool> stop{false};
    const auto started = std::chrono::steady_clock::now();
    const double budget_s = max_minutes.value() * 60.0;
    GanTrainHooks hooks;
    hooks.cancel = &stop;
    hooks.on_progress = [&stop, started, budget_s](const GanTrainProgress& p) {
        if (budget_s > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() > budget_s) stop = true;
        std::fprintf(stderr, "step %lld/%lld  d %.4f  g %.4f  D acc real %.2f fake %.2f  diversity %.2f  %.0f img/s  ETA %s\n",
                     static_cast<long long>(p.step), static_cast<long long>(p.total), p.d_loss, p.g_loss, p.d_real_acc,
                     p.d_fake_acc, p.diversity_ratio, p.images_per_s, format_duration(p.eta_s).c_str());
    };
    const TrainStart start = resume ? TrainStart::Resume : args.has("overwrite") ? TrainStart::Overwrite : TrainStart::New;
    auto r = train_gan(gc, tc, data.value(), device.value(), args.get("out"), start, hooks);
    if (!r) return failure(r.error());
    if (r->cancelled) std::cerr << "stopped at the time limit; continue with --resume\n";
    std::cerr << "done: " << r->steps_done << " steps, " << r->seconds << " s, " << r->images_per_s
              << " img/s; diversity ratio " << r->diversity_ratio << "; model in " << args.get("out") << "/model.safetensors\n";
    if (r->collapsed)
        return failure("train-gan: the run collapsed (diversity ratio " + std::to_string(r->diversity_ratio) + " < " +
                       std::to_string(kGanCollapseRatio) + "): the model is marked \"collapsed\"; try other learning rates or a new seed");
    return 0;
}

}  // namespace dlab::app
