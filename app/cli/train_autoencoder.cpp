// diffusionlab-cli train-autoencoder: the KL autoencoder of latent diffusion, with its figures
// (reconstruction PSNR and Frechet distance in the classifier's feature space, latent statistics).
#include "app/cli/commands.h"

#include <atomic>
#include <chrono>
#include <cstdio>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/data/datasets.h"
#include "core/evaluation/classifier.h"
#include "core/evaluation/feature_net.h"
#include "core/evaluation/metrics.h"
#include "core/io/atomic_file.h"
#include "core/io/model_catalog.h"
#include "core/io/safetensors.h"
#include "core/latent/autoencoder.h"
#include "core/runtime/runtime.h"
#include "core/training/trainer.h"

namespace dlab::app {

int cmd_train_autoencoder(const std::vector<std::string>& argv) {
    Args args("train-autoencoder");
    args.option("out", "the autoencoder file to write (.safetensors)")
        .option("steps", "optimisation steps", "20000")
        .option("batch", "batch size", "128")
        .option("lr", "learning rate (Adam)", "5e-4")
        .option("kl-weight", "weight of the KL term (KL summed over the latent, per pixel)", "1e-4")
        .option("perceptual", "weight of the classifier-feature term (0: off)", "0")
        .option("scale-equivariance", "weight of the L1 between decode(2x2-averaged latents) and the 2x2-averaged image "
                "(Skorokhodov et al. 2025: fewer high frequencies in the latents; 0: off)", "0")
        .option("init-from", "fine-tune this autoencoder (its architecture; --base-channels, --latent-channels and --pad "
                "must then be left out)")
        .option("classifier", "the classifier of the perceptual term and of the figures", "fashion-mnist-classifier")
        .option("base-channels", "channels at full resolution", "64")
        .option("latent-channels", "latent channels", "4")
        .option("pad", "border added to the 28x28 images (2: 32x32, latents 8x8)", "2")
        .option("seed", "random seed", "0")
        .option("log-every", "steps between progress lines", "500")
        .option("max-minutes", "stop after this much wall time (0: no limit)", "0")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "train-autoencoder --out FILE [OPTIONS]"); rc >= 0) return rc;
    if (!args.has("out")) return usage("train-autoencoder: --out FILE is required");
    AutoencoderTrainConfig tc;
    AutoencoderConfig ac;
    auto steps = args.get_int("steps", 1, 100000000);
    auto batch = args.get_int("batch", 1, 65536);
    auto lr = args.get_double("lr", 1e-8, 1.0);
    auto klw = args.get_double("kl-weight", 0.0, 1e3);
    auto pw = args.get_double("perceptual", 0.0, 1e3);
    auto sew = args.get_double("scale-equivariance", 0.0, 1e3);
    auto base = args.get_int("base-channels", 8, 1024);
    auto lat = args.get_int("latent-channels", 1, 64);
    auto pad = args.get_int("pad", 0, 64);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    auto le = args.get_int("log-every", 1, 100000000);
    auto mm = args.get_double("max-minutes", 0.0, 1e7);
    for (const std::string* e : {&steps.error(), &batch.error(), &lr.error(), &klw.error(), &pw.error(), &sew.error(), &base.error(),
                                 &lat.error(), &pad.error(), &seed.error(), &le.error(), &mm.error()})
        if (!e->empty()) return usage(*e);
    tc.steps = steps.value();
    tc.batch = batch.value();
    tc.lr = lr.value();
    tc.kl_weight = klw.value();
    tc.perceptual_weight = pw.value();
    tc.scale_equivariance = sew.value();
    tc.seed = uint64_t(seed.value());
    tc.log_every = le.value();
    ac.base_channels = base.value();
    ac.latent_channels = lat.value();
    ac.pad = pad.value();
    auto device = select_device(args.get("device"));
    if (!device) return failure("train-autoencoder: " + device.error());
    Autoencoder start{nullptr};
    if (args.has("init-from")) {
        for (const char* o : {"base-channels", "latent-channels", "pad"})
            if (args.given(o))
                return usage(std::string("train-autoencoder: --") + o + " comes from the --init-from autoencoder; leave it out");
        auto from = resolve_model(args.get("init-from"));
        if (!from) return failure("train-autoencoder: --init-from: " + from.error());
        auto loaded = load_autoencoder(from.value(), device.value());
        if (!loaded) return failure("train-autoencoder: --init-from: " + loaded.error());
        start = loaded.value();
        ac = start->config();
        ac.latent_shift.clear();
        ac.latent_scale.clear();
    }
    auto train = load_fashion_mnist(fashion_mnist_dir(), true);
    if (!train) return failure("train-autoencoder: " + train.error());
    auto test = load_fashion_mnist(fashion_mnist_dir(), false);
    if (!test) return failure("train-autoencoder: " + test.error());
    auto cpath = resolve_model(args.get("classifier"));
    if (!cpath) return failure("train-autoencoder: classifier: " + cpath.error());
    auto clf = load_classifier(cpath.value(), device.value());
    if (!clf) return failure("train-autoencoder: " + clf.error());
    Classifier classifier = clf.value();

    std::atomic<bool> stop{false};
    const auto started = std::chrono::steady_clock::now();
    const double budget = mm.value() * 60.0;
    double start_hf = -1;
    if (start) {
        torch::NoGradGuard ng;
        start_hf = latent_high_frequency_share(encode_all(start, test->x, device.value()));
        std::printf("starting from %s: test latents' high-frequency share %.4f\n", args.get("init-from").c_str(), start_hf);
    }
    auto ae = train_autoencoder(ac, tc, train.value(), device.value(), &classifier, [&](const AutoencoderProgress& p) {
        if (budget > 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() > budget) stop = true;
        std::fprintf(stderr, "step %lld/%lld  loss %.5f  L1 %.5f  KL %.4f  perc %.5f  equi %.5f  %.0f img/s\n",
                     (long long)p.step, (long long)p.total, p.loss, p.l1, p.kl, p.perceptual, p.equivariance, p.images_per_s);
    }, &stop, start ? &start : nullptr);
    if (!ae) return failure(ae.error());
    const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    // Figures on the 10,000 test images: reconstruction PSNR, the Frechet distance between the
    // classifier features of the images and of their reconstructions, and the latents' statistics.
    Autoencoder model = ae.value();
    torch::NoGradGuard ng;
    const at::Tensor z = encode_all(model, test->x, device.value());
    const at::Tensor rec = decode_all(model, z, device.value());
    const double db = psnr(rec, test->x);
    auto fnet = classifier_feature_net(classifier, device.value(), "Fashion-MNIST classifier");
    auto feats = [&](const at::Tensor& x) { return fnet->extract(x).pooled; };
    const FeatureStats real = feature_stats(feats(test->x));
    const double rfd = frechet_distance(feature_stats(feats(rec)), real);
    const double floor = frechet_distance(feature_stats(feats(train->x.narrow(0, 0, 10000))), real);
    const double zmean = z.mean().item<double>(), zstd = z.std().item<double>();
    const double hf = latent_high_frequency_share(z);
    const at::Tensor post_sd = model->scale_spread(encode_all_moments(model, test->x, device.value()).second);
    const double spread = post_sd.mean().item<double>();
    auto& tj = model->mutable_config().training;
    tj["seconds"] = train_seconds;
    tj["test_psnr_db"] = db;
    tj["test_recon_fd"] = rfd;
    tj["fd_floor_train_vs_test"] = floor;
    tj["test_latent_mean"] = zmean;
    tj["test_latent_std"] = zstd;
    tj["test_latent_high_frequency_share"] = hf;
    tj["test_posterior_std_scaled"] = spread;
    if (start) {
        tj["fine_tuned_from"] = args.get("init-from");
        tj["fine_tuned_from_training"] = start->config().training;
    }
    tj["classifier"] = cpath.value();
    if (auto st = save_autoencoder(args.get("out"), model); !st) return failure("train-autoencoder: " + st.error());
    const auto& c = model->config();
    std::printf("autoencoder: %lld parameters, latent %lldx%lldx%lld (images %lldx%lld padded to %lld), scale factor %.5f\n",
                (long long)[&] { int64_t n = 0; for (auto& p : model->parameters()) n += p.numel(); return n; }(),
                (long long)c.latent_channels, (long long)c.latent_size(), (long long)c.latent_size(),
                (long long)c.image_size, (long long)c.image_size, (long long)c.padded_size(), c.scale_factor);
    std::printf("test set (10,000): PSNR %.2f dB; reconstruction FD %.3f (classifier features; train-vs-test floor %.3f);"
                " scaled latents mean %.4f std %.4f\n", db, rfd, floor, zmean, zstd);
    std::printf("latent space: high-frequency share %.4f (white noise 0.75)%s; posterior std %.4f of the scaled latents' 1\n", hf,
                start ? (", from " + std::to_string(start_hf).substr(0, 6) + " before").c_str() : "", spread);
    std::printf("trained %lld steps in %.1f s on %s; wrote %s\n", (long long)model->config().training.value("steps_done", tc.steps), train_seconds,
                device->str().c_str(), args.get("out").c_str());
    return 0;
}

}  // namespace dlab::app
