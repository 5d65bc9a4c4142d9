// diffusionlab-cli train: train a diffusion model (Fashion-MNIST, an image folder, latents or a 2-D toy set)
#include "app/cli/commands.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <tuple>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "app/cli/launch.h"
#include "core/data/datasets.h"
#include "core/forward/schedule.h"
#include "core/io/atomic_file.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/latent/autoencoder.h"
#include "core/networks/network.h"
#include "core/runtime/runtime.h"
#include "core/training/trainer.h"
#ifdef DLAB_HAVE_IMAGING
#include "imaging/image_folder.h"
#include "imaging/image_io.h"
#endif

namespace dlab::app {

int cmd_train(const std::vector<std::string>& argv) {
    Args args("train");
    args.option("dataset", "fashion-mnist, fashion-mnist-captions (text-to-image; needs --text-encoder), images:DIR (class subfolders = labels), latents:AUTOENCODER (Fashion-MNIST latents) or toy:moons|swissroll|8gaussians|checkerboard", "fashion-mnist")
        .option("text-encoder", "fashion-mnist-captions: the frozen CLIP (train-clip) whose text encoder conditions the UNet")
        .option("config", "a JSON settings file (network, schedule, prediction, training); options given here win")
        .option("schedule", "linear, cosine, scaled-linear or sigmoid", "cosine")
        .option("timesteps", "diffusion steps T", "1000")
        .option("latent-norm", "latents:AE only: global (the autoencoder's one scale factor) or channel (each latent channel to mean 0, std 1; stored in the model)", "global")
        .flag("latent-sample", "latents:AE only: train on a fresh draw of each image's latent posterior every step (as LDM does), not on its mean")
        .option("snr-shift", "multiply the schedule's SNR at every t by this (above 1: more signal left; for small latents)", "1")
        .option("prediction", "eps, v or x0", "eps")
        .option("steps", "optimisation steps", "10000")
        .option("batch", "batch size", "128")
        .option("lr", "learning rate", "2e-4")
        .option("warmup", "warm-up steps", "200")
        .option("lr-decay", "after the warm-up: constant, or cosine down to --lr-final x lr at the last of --steps", "constant")
        .option("lr-final", "--lr-decay cosine: the last step's learning rate as a fraction of --lr", "0.1")
        .option("init-from", "a new run's starting weights: a model file (or bundled name) of the same network, schedule and prediction")
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
        .option("bucket-mb", "several ranks: MiB of gradients summed at once while backward runs", "25")
        .flag("learn-sigma", "learn the variance too (hybrid loss L_simple + w L_vlb, Improved DDPM)")
        .flag("bf16", "bf16 autocast of the forward pass (CUDA)")
        .flag("hflip", "random horizontal flips")
        .flag("resume", "continue from OUT/checkpoint.safetensors (with its settings; options given here change them)")
        .flag("overwrite", "replace the run already in OUT (without it, an existing run is never overwritten)")
        .flag("help", "show this help");
    add_distributed_options(args);
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
    auto lr_final = args.get_double("lr-final", 0.0, 1.0);
    if (!lr_final) return usage(lr_final.error());
    auto snr_shift = args.get_double("snr-shift", kMinSnrShift, kMaxSnrShift);
    if (!snr_shift) return usage(snr_shift.error());
    if (args.get("lr-decay") != "constant" && args.get("lr-decay") != "cosine")
        return usage("train: unknown --lr-decay '" + args.get("lr-decay") + "' (constant or cosine)");
    if (args.has("resume") && args.given("init-from"))
        return usage("train: --init-from starts a new run; a resumed run continues from its own checkpoint");
    for (const std::string* e : {&steps.error(), &batch.error(), &lr.error(), &warm.error(), &ema.error(),
                                 &pu.error(), &msnr.error(), &base.error(), &drop.error(), &seed.error(),
                                 &ce.error(), &le.error(), &T.error(), &isize.error(), &chans.error(), &vlbw.error()})
        if (!e->empty()) return usage(*e);
    if (chans.value() == 2) return usage("train: --channels must be 1 or 3");
    if (args.has("resume") && args.has("overwrite")) return usage("train: --resume and --overwrite exclude each other");
    // Several ranks asked for: this process starts them and waits (each rank runs the lines below).
    if (auto rc = launch_if_asked(args, "train", argv)) return *rc;
    auto device_r = select_device(args.get("device"));
    if (!device_r) return failure("train: " + device_r.error());
    c10::Device device_value = device_r.value();
    auto comm_r = join_ranks(args, device_value);
    if (!comm_r) return failure("train: " + comm_r.error());
    const std::shared_ptr<Communicator> comm = comm_r.value();
    const bool lead = !comm || comm->rank() == 0;  // rank 0 speaks for the run
    const Result<c10::Device> device = device_value;

    // The dataset fixes the network's kind and input shape.
    const std::string ds = args.get("dataset");
    const std::string latent_norm = args.get("latent-norm");
    if ((latent_norm != "global" || args.given("latent-sample")) && ds.rfind("latents:", 0) != 0)
        return usage("train: --latent-norm and --latent-sample are for --dataset latents:AUTOENCODER only");
    if (latent_norm != "global" && latent_norm != "channel")
        return usage("train: --latent-norm must be global or channel, got '" + latent_norm + "'");
    Result<LabelledData> data = Error{""};
    TextTraining text_training;
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
        // One encoding pass: posterior means (and spreads), scaled by the autoencoder's factor or,
        // with --latent-norm channel, each channel to mean 0 and std 1 (kept in the model file).
        const auto [raw, raw_std] = encode_all_moments(ae.value(), images->x, device.value());
        if (latent_norm == "channel") {
            std::tie(mc.latent_shift, mc.latent_scale) = measure_channel_norm(raw);
            ae.value()->mutable_config().latent_shift = mc.latent_shift;
            ae.value()->mutable_config().latent_scale = mc.latent_scale;
        }
        latents.x = ae.value()->scale_latents(raw);
        latents.name = "fashion-mnist latents (" + ds.substr(8) + ")";
        if (args.given("latent-sample")) {
            latents.x_std = ae.value()->scale_spread(raw_std);
            latents.name = "fashion-mnist latent posteriors (" + ds.substr(8) + ")";
        }
        if (lead) {
            const at::Tensor per_channel = latents.x.transpose(0, 1).reshape({latents.x.size(1), -1}).std(1);
            std::cerr << "encoded " << latents.x.size(0) << " images to latents of shape " << latents.x.size(1) << "x"
                      << latents.x.size(2) << "x" << latents.x.size(3) << " (mean " << latents.x.mean().item<double>()
                      << ", std " << latents.x.std().item<double>() << "; per channel std";
            for (int64_t c = 0; c < per_channel.size(0); ++c) std::cerr << " " << per_channel[c].item<double>();
            std::cerr << ")\n";
            if (latents.x_std.defined())
                std::cerr << "posterior std of the scaled latents: mean " << latents.x_std.mean().item<double>() << ", max "
                          << latents.x_std.max().item<double>() << " (drawn afresh every step)\n";
        }
        // A bundled name stays a name; a file is referenced by its absolute path.
        const std::string spec = ds.substr(8);
        mc.autoencoder = spec.find('/') == std::string::npos && spec.find(".safetensors") == std::string::npos
                             ? spec : std::filesystem::absolute(spec).string();
        data = std::move(latents);
    } else if (ds == "fashion-mnist-captions") {
        // Text-to-image: Fashion-MNIST with captions measured on each image, read by a frozen CLIP.
        if (!args.has("text-encoder")) return usage("train: fashion-mnist-captions needs --text-encoder (a CLIP from train-clip)");
        const std::string spec = args.get("text-encoder");
        auto clip_path = resolve_model(spec);
        if (!clip_path) return failure("train: text encoder: " + clip_path.error());
        auto clip = load_clip(clip_path.value(), device.value());
        if (!clip) return failure("train: " + clip.error());
        data = load_fashion_mnist(fashion_mnist_dir(), true);
        if (!data) return failure("train: " + data.error());
        auto captioned = caption_dataset(data.value(), clip->tokenizer, 0, clip->held_out, &clip->thresholds);
        if (!captioned) return failure("train: " + captioned.error());
        text_training.levels = captioned->levels;
        text_training.held_out = clip->held_out;
        text_training.clip = std::make_shared<Clip>(std::move(clip.value()));
        data->name = "fashion-mnist-captions";
        mc.text_encoder = spec.find('/') == std::string::npos && spec.find(".safetensors") == std::string::npos
                              ? spec : std::filesystem::absolute(spec).string();
        if (lead) std::cerr << "captions read by the text encoder " << clip_path.value() << " (held out: "
                            << text_training.held_out.size() << " class-attribute pairs)\n";
    } else if (ds == "fashion-mnist" || ds.rfind("toy:", 0) == 0) {
        data = load_builtin_dataset(ds);
    } else {
        return usage("train: unknown dataset '" + ds + "' (fashion-mnist, images:DIR or toy:NAME)");
    }
    if (!data) return failure("train: " + data.error());
    shape_network_for_data(data.value(), mc.network);
    if (text_training.clip) {
        mc.network.num_classes = 0;  // the prompt is the condition
        mc.network.context_dim = text_training.clip->config.width;
        mc.network.context_length = text_training.clip->tokenizer.context();
        mc.network.attention_resolutions = {mc.network.image_size / 2, mc.network.image_size / 4};
    } else if (args.has("text-encoder")) {
        return usage("train: --text-encoder goes with --dataset fashion-mnist-captions");
    }

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
    // --resume starts from the checkpoint's own settings (network, schedule, prediction and
    // training), like a settings file: only the options given here change them, and the trainer
    // refuses a network, schedule or prediction that differs from the checkpoint's.
    const bool resume = args.has("resume");
    if (resume) {
        const std::string ckpt = args.get("out") + "/checkpoint.safetensors";
        auto file = load_safetensors(ckpt);
        if (!file) return failure("train: --resume: " + file.error());
        auto saved_config = stored_model_config(file.value(), ckpt);
        if (!saved_config) return failure("train: --resume: " + saved_config.error());
        const std::string autoencoder = mc.autoencoder;
        if (saved_config->network.context_dim != mc.network.context_dim)
            return failure("train: --resume: the run in " + args.get("out") + (saved_config->network.context_dim > 0
                               ? " is text-to-image: resume it with --dataset fashion-mnist-captions --text-encoder " + saved_config->text_encoder
                               : " was not trained on captions"));
        mc.network = saved_config->network;
        mc.schedule = saved_config->schedule;
        mc.prediction = saved_config->prediction;
        if (saved_config->training.is_object()) tc = train_config_from_json(saved_config->training);
        mc.autoencoder = autoencoder;
    }
    const bool settings_given = has_config || resume;
    auto use = [&](const char* name) { return !settings_given || args.given(name); };
    if (use("steps")) tc.steps = steps.value();
    if (use("batch")) tc.batch = batch.value();
    if (use("lr")) tc.lr = lr.value();
    if (use("warmup")) tc.warmup = warm.value();
    if (use("lr-decay")) tc.lr_decay = args.get("lr-decay");
    if (use("lr-final")) tc.lr_final = lr_final.value();
    if (args.given("init-from")) {
        auto init = resolve_model(args.get("init-from"));
        if (!init) return failure("train: --init-from: " + init.error());
        tc.init_from = init.value();
    }
    if (use("ema")) tc.ema_decay = ema.value();
    if (use("p-uncond")) tc.p_uncond = pu.value();
    if (use("min-snr")) tc.min_snr_gamma = msnr.value();
    if (use("seed")) tc.seed = static_cast<uint64_t>(seed.value());
    if (use("checkpoint-every")) tc.checkpoint_every = ce.value();
    if (use("log-every")) tc.log_every = le.value();
    if (use("vlb-weight")) tc.vlb_weight = vlbw.value();
    if (args.given("hflip") || !settings_given) tc.hflip = args.given("hflip");
    if (args.given("bf16") || !settings_given) tc.bf16 = args.given("bf16");
    if (args.given("learn-sigma") || !settings_given) mc.network.learn_sigma = args.given("learn-sigma");
    if (use("schedule")) {
        const auto sk = parse_schedule_kind(args.get("schedule"));
        if (!sk) return usage("train: unknown schedule '" + args.get("schedule") + "'");
        mc.schedule.kind = *sk;
    }
    if (use("timesteps")) mc.schedule.timesteps = T.value();
    if (use("snr-shift")) mc.schedule.snr_shift = snr_shift.value();
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
    if (comm && tc.batch % comm->world_size() != 0)
        return usage("train: --batch " + std::to_string(tc.batch) + " must be a multiple of the " +
                     std::to_string(comm->world_size()) + " ranks");
    if (comm && lead)
        std::cerr << "data-parallel over " << comm->world_size() << " ranks (" << comm->backend_name() << "), "
                  << tc.batch / comm->world_size() << " of the " << tc.batch << " images of each step per rank\n";
    if (lead) std::cerr << "training " << to_string(mc.network.kind) << " (" << net.value()->parameter_count()
              << " parameters) on " << data->name << " (" << data->x.size(0) << " examples, "
              << (text_training.clip ? std::string("prompts") : std::to_string(data->num_classes) + " classes") << "), " << schedule_summary(mc.schedule) << " schedule, "
              << to_string(mc.prediction) << " prediction" << (mc.network.learn_sigma ? ", hybrid loss" : "")
              << (tc.bf16 ? ", bf16 autocast" : "") << ", device " << device->str() << "\n";
    auto max_minutes = args.get_double("max-minutes", 0.0, 1e7);
    if (!max_minutes) return usage(max_minutes.error());
    std::atomic<bool> stop{false};
    const auto started = std::chrono::steady_clock::now();
    const double budget_s = max_minutes.value() * 60.0;
    TrainHooks hooks;
    hooks.cancel = &stop;
    if (text_training.clip) hooks.text = &text_training;
    auto bucket_mb = args.get_double("bucket-mb", 1e-4, 1e5);
    if (!bucket_mb) return usage(bucket_mb.error());
    hooks.bucket_bytes = static_cast<int64_t>(bucket_mb.value() * 1024 * 1024);
    hooks.on_progress = [&stop, started, budget_s](const TrainProgress& p) {
        if (budget_s > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() > budget_s)
            stop = true;
        std::fprintf(stderr, "step %lld/%lld  loss %.5f  lr %.2e  %.0f img/s  ETA %s\n",
                     static_cast<long long>(p.step), static_cast<long long>(p.total), p.loss, p.lr,
                     p.images_per_s, format_duration(p.eta_s).c_str());
    };
    const TrainStart start = resume ? TrainStart::Resume : args.has("overwrite") ? TrainStart::Overwrite : TrainStart::New;
    auto r = train(mc, tc, data.value(), device.value(), args.get("out"), start, hooks, comm.get());
    if (!r) return failure(r.error());
    if (!lead) return 0;
    if (r->cancelled) std::cerr << "stopped at the time limit; continue with --resume\n";
    std::cerr << "done: " << r->steps_done << " steps, " << r->seconds << " s, " << r->images_per_s << " img/s";
    if (r->steady_images_per_s > 0) std::cerr << " (" << r->steady_images_per_s << " img/s after the first log window)";
    std::cerr << "; model in " << args.get("out") << "/model.safetensors\n";
    if (comm)
        std::cerr << "gradients summed in " << r->buckets << " bucket(s), " << r->overlapped_buckets
                  << " of them started while the backward pass still ran\n";
    return 0;
}

}  // namespace dlab::app
