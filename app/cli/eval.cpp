// diffusionlab-cli eval and sweep: sample-quality metrics of a model's samples against a reference
// set, per guidance scale (classifier-free or classifier guidance), with the real-vs-real floor.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "app/cli/commands.h"
#include "app/cli/cli_util.h"
#include "app/cli/eval_common.h"
#include "app/cli/launch.h"
#include "app/cli/nll.h"
#include "core/latent/autoencoder.h"
#include "core/io/atomic_file.h"
#include "core/evaluation/classifier.h"
#include "core/data/datasets.h"
#include "core/evaluation/feature_net.h"
#include "core/evaluation/likelihood.h"
#include "core/sampling/generate.h"
#include "core/evaluation/metrics.h"
#include "core/gan/gan.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/guidance/noisy_classifier.h"
#include "core/runtime/runtime.h"
#ifdef DLAB_HAVE_IMAGING
#include "imaging/image_folder.h"
#endif

namespace dlab::app {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const std::vector<std::string> kAllMetrics = {"fid", "sfid", "is", "precision", "recall", "agreement", "diversity"};

Result<std::set<std::string>> parse_metrics(const std::string& text) {
    std::set<std::string> out;
    std::stringstream ss(text);
    std::string m;
    while (std::getline(ss, m, ',')) {
        if (m.empty()) continue;
        if (m == "nll" || m == "copies") {  // the bound (app/cli/nll.cpp) and training-data copying: never in "all"
            out.insert(m);
            continue;
        }
        if (m == "all") {
            out.insert(kAllMetrics.begin(), kAllMetrics.end());
            continue;
        }
        if (std::find(kAllMetrics.begin(), kAllMetrics.end(), m) == kAllMetrics.end())
            return Error{"unknown metric '" + m + "' (fid, sfid, is, precision, recall, agreement, diversity, all, nll, copies)"};
        out.insert(m);
    }
    if (out.empty()) return Error{"--metrics is empty"};
    return out;
}

// Balanced classes: sample i asks for class i mod C (10 for an unconditional model's agreement).
at::Tensor balanced_targets(int64_t N, int64_t C) { return at::arange(N, at::kLong).remainder(C > 0 ? C : 10); }

// The request of one guidance scale (the same on every rank): balanced classes, the same starting
// noise for every scale.
GenerateRequest scale_request(SamplerKind sk, TimestepSpacing spacing, int64_t steps, int64_t seed, int64_t batch, int64_t N,
                              int64_t C, bool classifier, double s, const ClassifierGradFn& grad, double dynamic_threshold) {
    GenerateRequest req;
    req.sampler.kind = sk;
    req.sampler.spacing = spacing;
    req.sampler.dynamic_threshold = dynamic_threshold;
    req.sampler.steps = steps;
    req.sampler.eta = sk == SamplerKind::Ddpm ? 1.0 : 0.0;
    const at::Tensor target = balanced_targets(N, C);
    req.labels = C > 0 ? target : at::Tensor();
    req.count = N;
    req.seed = static_cast<uint64_t>(seed);
    req.batch = batch;
    if (!classifier) {
        req.guidance = s;
    } else {
        req.guidance = 0.0;
        req.classifier_grad = grad;
        req.classifier_scale = s;
        req.classifier_labels = target;
    }
    return req;
}

// The requested samples of one scale: all of them on one process; with ranks, this rank's batches,
// then every rank's gathered into the order one process would have made them.
Result<at::Tensor> generate_share(const LoadedModel& model, GenerateRequest req, Communicator* comm) {
    if (!comm) return generate(model, req);
    req.shard = comm->rank();
    req.shards = comm->world_size();
    auto mine = generate(model, req);
    if (!mine) return Error{"rank " + std::to_string(comm->rank()) + ": " + mine.error()};
    // Every rank's share padded to the largest (rank 0 has the most batches) for the gather.
    const auto sizes0 = shard_batch_sizes(req.count, req.batch, 0, req.shards);
    int64_t rows = 0;
    for (int64_t n : sizes0) rows += n;
    const NetworkConfig& nc = model.config.network;
    at::Tensor local = mine.value();
    if (!local.defined()) {  // a rank with no batch (more ranks than batches)
        std::vector<int64_t> shape{0, nc.in_channels, nc.image_size, nc.image_size};
        if (model.autoencoder && req.decode_latents) {
            const auto& ac = model.autoencoder->config();
            shape = {0, ac.in_channels, ac.image_size, ac.image_size};
        }
        local = at::zeros(shape, at::TensorOptions().dtype(at::kFloat));
    }
    std::vector<int64_t> padded_shape = local.sizes().vec();
    padded_shape[0] = rows - local.size(0);
    const at::Tensor padded = at::cat({local, at::zeros(padded_shape, local.options())}, 0);
    try {
        std::vector<at::Tensor> all = comm->all_gather(padded);
        for (auto& t : all) t = t.to(at::kCPU);
        return assemble_shards(all, req.count, req.batch);
    } catch (const DistributedError& e) {
        return Error{e.what()};
    }
}

// A rank other than 0: samples its share of every scale, exactly as rank 0 asks for (same
// requests), and leaves features, metrics and output to rank 0.
int sample_share(const Args& args, const LoadedModel& model, Communicator* comm, const std::vector<double>& scales,
                 SamplerKind sk, TimestepSpacing spacing, int64_t steps, int64_t seed, int64_t batch, int64_t N,
                 const std::string& command) {
    const int64_t C = model.config.network.num_classes;
    ClassifierGradFn grad;
    const bool classifier = args.get("kind") == "classifier";
    if (classifier) {
        auto cp = resolve_model(args.get("noisy-classifier"));
        if (!cp) return failure(command + ": " + cp.error());
        auto nc = load_noisy_classifier(cp.value(), model.network->parameters().front().device());
        if (!nc) return failure(command + ": " + nc.error());
        grad = classifier_gradient(nc.value(), NoiseSchedule::create(model.config.schedule).value());
    }
    for (double s : scales) {
        GenerateRequest req = scale_request(sk, spacing, steps, seed, batch, N, C, classifier, s, grad,
                                            args.get_double("dynamic-threshold", 0.0, 1.0).value());
        req.bf16 = args.has("bf16");
        auto x = generate_share(model, req, comm);
        if (!x) return failure(command + ": " + x.error());
    }
    return 0;
}

int run_eval(const std::string& command, const std::vector<std::string>& argv) {
    const bool sweep = command == "sweep";
    Args args(command);
    args.option("model", "default, a bundled name or a .safetensors file", "default")
        .option("metrics", sweep ? "fid,sfid,is,precision,recall,agreement,diversity or all; copies: training-data copying in pixels"
                                 : "fid,sfid,is,precision,recall,agreement,diversity or all; nll: the variational bound in bits/dim; "
                                   "copies: training-data copying (samples' distance to their nearest training image, in pixels)",
                sweep ? "all" : "fid,sfid,is,precision,recall,agreement")
        .option("count", "samples per scale (and reference/floor images)", sweep ? "2000" : "10000")
        .option("scales", "guidance scales (the same starting noise for every scale)", sweep ? "0,1,2,3,5" : "3");
    if (!sweep) args.option("guidance", "one classifier-free scale (same as --scales S)");
    args.option("kind", "cfg (classifier-free scale s) or classifier (classifier scale c on the unconditional path)", "cfg")
        .option("noisy-classifier", "for --kind classifier", "fashion-mnist-noisy-classifier")
        .option("classifier", "the feature classifier (Fashion-MNIST)", "fashion-mnist-classifier")
        .option("features", "a TorchScript feature network instead (see README: forward(x) -> pooled[, spatial[, logits]])")
        .option("features-size", "input side of the TorchScript network", "299")
        .option("features-channels", "input channels of the TorchScript network", "3")
        .option("reference", "fashion-mnist-test, fashion-mnist-train (does the model copy its training images?) or an image folder",
                "fashion-mnist-test")
        .option("sampler", "ddpm, ddim or dpmpp2m", "ddim")
        .option("dynamic-threshold", "Imagen's dynamic thresholding at this percentile of |x0| (0: static clipping at 1)", "0")
        .option("steps", "sampling steps", "50")
        .option("spacing", "timesteps of the sampler: trailing (from T-1), leading (down to 0) or linspace (T-1 to 0)",
                "trailing")
        .option("seed", "random seed", "0")
        .option("batch", "samples per chain", "1000")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .option("precision", precision_help(), "fp32")
        .option("json", "also write the results as JSON")
        .option("csv", "also write one CSV row per scale")
        .flag("real-as-samples", "score training images instead of samples (metric timings and the floor's spread)")
        .option("through", "with --real-as-samples: also score those images encoded and decoded by this autoencoder (the best any latent model on it can do)")
        .flag("bf16", "bf16 autocast of the network while sampling (CUDA)")
        .flag("help", "show this help");
    if (!sweep)
        args.option("from-real", "timesteps T: start the chains from the first N training images (a latent model: their "
                                 "latents) noised by q(x_T | x_0) and run the sampler's steps below T, a row per T and "
                                 "scale (how much of the real data the model restores from that noise level; the chain "
                                 "starts at the sampler's first timestep at or below T, else at its last)");
    if (!sweep) add_nll_options(args);
    add_distributed_options(args);
    if (int rc = parse_or_help(args, argv, command + " [--model M] [OPTIONS]"); rc >= 0) return rc;
    auto count = args.get_int("count", 10, 1000000);
    if (!count) return usage(count.error());
    auto steps = args.get_int("steps", 1, 10000);
    if (!steps) return usage(steps.error());
    auto seed = args.get_int("seed", 0, INT64_MAX);
    if (!seed) return usage(seed.error());
    auto batch = args.get_int("batch", 1, 100000);
    if (!batch) return usage(batch.error());
    auto metrics = parse_metrics(args.get("metrics"));
    if (!metrics) return usage(command + ": " + metrics.error());
    auto scales = (!sweep && args.given("guidance")) ? args.get_double_list("guidance", -100.0, 1000.0)
                                                      : args.get_double_list("scales", -100.0, 1000.0);
    if (!scales) return usage(scales.error());
    const std::string kind = args.get("kind");
    if (kind != "cfg" && kind != "classifier") return usage(command + ": --kind must be cfg or classifier");
    const auto sk = parse_sampler_kind(args.get("sampler"));
    if (!sk) return usage(command + ": unknown sampler '" + args.get("sampler") + "'");
    const auto spacing = parse_timestep_spacing(args.get("spacing"));
    if (!spacing)
        return usage(command + ": unknown spacing '" + args.get("spacing") + "' (leading, trailing or linspace)");
    auto dynamic = args.get_double("dynamic-threshold", 0.0, 1.0);
    if (!dynamic) return usage(dynamic.error());
    auto fsize = args.get_int("features-size", 8, 4096);
    auto fch = args.get_int("features-channels", 1, 3);
    if (!fsize) return usage(fsize.error());
    if (!fch) return usage(fch.error());
    if (metrics->count("nll") && (args.given("nproc-per-node") || std::getenv("WORLD_SIZE")))
        return usage(command + ": --metrics nll runs on one rank (leave out --nproc-per-node)");
    // Several ranks: each samples its share of the batches, rank 0 gathers them and reports.
    if (auto rc = launch_if_asked(args, command, argv)) return *rc;
    auto device = select_device(args.get("device"));
    if (!device) return failure(command + ": " + device.error());
    if (int rc = apply_precision(args, device.value(), command); rc >= 0) return rc;
    std::shared_ptr<Communicator> comm;
    {
        c10::Device d = device.value();
        auto joined = join_ranks(args, d);
        if (!joined) return failure(command + ": " + joined.error());
        comm = joined.value();
        device = d;
    }
    const bool lead = !comm || comm->rank() == 0;
    const bool real_as_samples = args.given("real-as-samples");
    std::vector<int64_t> from_real;  // --from-real: chains from noised training data
    if (args.given("from-real")) {
        auto ts = args.get_int_list("from-real", 0, 100000);
        if (!ts) return usage(ts.error());
        if (real_as_samples) return usage(command + ": --from-real needs a diffusion model, not --real-as-samples");
        if (comm) return usage(command + ": --from-real runs on one process (leave out --nproc-per-node)");
        if (args.has("features") || (args.get("reference") != "fashion-mnist-test" && args.get("reference") != "fashion-mnist-train"))
            return usage(command + ": --from-real starts from Fashion-MNIST training images (the default reference and features)");
        from_real = ts.value();
    }

    Autoencoder through{nullptr};  // --through: training images round-tripped by this autoencoder
    if (args.given("through")) {
        if (!real_as_samples) return usage(command + ": --through goes with --real-as-samples");
        auto path = resolve_model(args.get("through"));
        if (!path) return failure(command + ": --through: " + path.error());
        if (!is_autoencoder_file(path.value())) return usage(command + ": --through: " + path.value() + " is not an autoencoder");
        auto ae = load_autoencoder(path.value(), device.value());
        if (!ae) return failure(command + ": --through: " + ae.error());
        through = ae.value();
    }
    Result<LoadedModel> model = Error{"no model"};
    Autoencoder vae{nullptr};  // an autoencoder file as the model: its decoder as a one-step generator
    std::string model_path = "(training images)";
    if (!real_as_samples) {
        auto path = resolve_model(args.get("model"));
        if (!path) return failure(command + ": " + path.error());
        model_path = path.value();
        if (is_autoencoder_file(path.value())) {
            auto ae = load_autoencoder(path.value(), device.value());
            if (!ae) return failure(command + ": " + ae.error());
            vae = ae.value();
        }
    }
    if (!real_as_samples && !vae) {
        model = load_model(model_path, device.value());
        if (!model) return failure(command + ": " + model.error());
        if (model->config.network.kind != NetworkKind::UNet) return usage(command + ": needs an image model");
        if (!from_real.empty()) {
            const int64_t T = model->config.schedule.timesteps;
            for (int64_t t : from_real)
                if (t >= T) return usage(command + ": --from-real " + std::to_string(t) + ": the model's timesteps are 0.." + std::to_string(T - 1));
            if (model->config.network.context_dim > 0)
                return usage(command + ": --from-real takes class-conditional or unconditional models, not text-to-image");
            if (auto st = check_starts_from_fashion_mnist(model.value()); !st) return usage(command + ": --from-real " + st.error());
        }
    }
    if (vae && !from_real.empty()) return usage(command + ": --from-real needs a diffusion model, not an autoencoder");
    json nll;
    if (metrics->count("nll")) {
        if (sweep) return usage("sweep: --metrics nll belongs to eval");
        if (!parse_bound_variance(args.get("nll-variance")))
            return usage(command + ": --nll-variance must be model, small or large (not '" + args.get("nll-variance") + "')");
        if (!model) return usage(command + ": --metrics nll needs a diffusion model (not an autoencoder or training images)");
        auto j = run_nll(args, model.value(), command);
        if (!j) return failure(command + ": " + j.error());
        nll = j.value();
        metrics->erase("nll");
        if (metrics->empty()) {  // the bound alone: no features, no sampling
            const json out = {{"command", command}, {"model", model_path}, {"device", device->str()}, {"nll", nll}};
            if (args.has("json"))
                if (auto st = write_file_atomic(args.get("json"), out.dump(2)); !st) return failure(command + ": " + st.error());
            return 0;
        }
    }
    if (!lead && (real_as_samples || vae)) return 0;  // nothing to sample: rank 0 does it all
    if (!lead) return sample_share(args, model.value(), comm.get(), scales.value(), *sk, *spacing, steps.value(), seed.value(),
                                   batch.value(), count.value(), command);
    // The feature network.
    std::unique_ptr<FeatureNet> fnet;
    if (args.given("features")) {
        auto f = torchscript_feature_net(args.get("features"), device.value(), fsize.value(), fch.value());
        if (!f) return failure(command + ": " + f.error());
        fnet = std::move(f.value());
    } else {
        auto cpath = resolve_model(args.get("classifier"));
        if (!cpath) return failure(command + ": classifier: " + cpath.error());
        auto clf = load_classifier(cpath.value(), device.value());
        if (!clf) return failure(command + ": " + clf.error());
        fnet = classifier_feature_net(clf.value(), device.value(), "Fashion-MNIST classifier " + cpath.value());
    }
    // Reference and floor sets.
    const int64_t N = count.value();
    at::Tensor ref_images, floor_images;
    at::Tensor train_labels;
    at::Tensor train_pixels, unseen_d;  // --metrics copies: the training split and the test images' distances to it
    const bool copies = metrics->count("copies") > 0;
    std::string ref_name = args.get("reference");
    if (ref_name == "fashion-mnist-test" || ref_name == "fashion-mnist-train") {
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!test) return failure(command + ": " + test.error());
        auto train = load_fashion_mnist(fashion_mnist_dir(), true);
        if (!train) return failure(command + ": " + train.error());
        // Against the training images (a model that copies them scores better there than against
        // the test images), the floor set is the test split: the same floor FID either way.
        const bool vs_train = ref_name == "fashion-mnist-train";
        const LabelledData& ref = vs_train ? train.value() : test.value();
        const LabelledData& other = vs_train ? test.value() : train.value();
        ref_images = ref.x.narrow(0, 0, std::min<int64_t>(N, ref.x.size(0)));
        floor_images = other.x.narrow(0, 0, std::min<int64_t>(N, other.x.size(0)));
        train_labels = other.labels.narrow(0, 0, floor_images.size(0));
        if (copies) {
            train_pixels = train->x.to(device.value());
            const auto t0 = Clock::now();
            unseen_d = nearest_distances(test->x.narrow(0, 0, std::min<int64_t>(N, test->x.size(0))), train_pixels);
            std::printf("  copies: the nearest of the %lld training images to each of %lld test images in %.1f s (median distance %.3f)\n",
                        (long long)train_pixels.size(0), (long long)unseen_d.size(0), since(t0), unseen_d.median().item<double>());
        }
    } else {
        if (copies) return usage(command + ": --metrics copies compares with the Fashion-MNIST training split (the default reference)");
#ifdef DLAB_HAVE_IMAGING
        imaging::ImageFolderOptions io;
        io.size = real_as_samples ? 28 : vae ? vae->config().image_size : model->config.network.image_size;
        io.channels = real_as_samples ? 1 : vae ? int(vae->config().in_channels) : static_cast<int>(model->config.network.in_channels);
        auto d = imaging::load_image_folder(ref_name, io);
        if (!d) return failure(command + ": reference: " + d.error());
        // Half the folder is the reference, the other half the floor.
        const int64_t half = d->x.size(0) / 2;
        if (half < 2) return failure(command + ": reference: " + ref_name + " needs at least 4 images");
        const at::Tensor perm = at::randperm(d->x.size(0), make_generator(5), at::TensorOptions().dtype(at::kLong));
        ref_images = d->x.index_select(0, perm.narrow(0, 0, std::min(N, half)));
        floor_images = d->x.index_select(0, perm.narrow(0, half, std::min(N, half)));
#else
        return usage(command + ": this build has no OpenCV imaging; only --reference fashion-mnist-test or fashion-mnist-train");
#endif
    }
    torch::NoGradGuard ng;
    Features real, floor;
    try {
        real = fnet->extract(ref_images);
        floor = fnet->extract(floor_images);
    } catch (const std::exception& e) {
        return failure(command + ": feature network: " + e.what());
    }
    const FeatureStats real_stats = feature_stats(real.pooled);
    FeatureStats real_spatial;
    if (real.spatial.defined()) real_spatial = feature_stats(real.spatial);
    std::map<std::string, double> timing;
    json floor_row = compute_metrics(metrics.value(), floor, train_labels, real, real_stats,
                                     real.spatial.defined() ? &real_spatial : nullptr, timing);
    floor_row["saturation"] = saturated_fraction(floor_images);
    // Copying, measured in the images' pixels: the floor row is the real test images themselves.
    auto add_copies = [&](json& r, const at::Tensor& d) {
        const CopyStats c = copy_stats(d, unseen_d);
        r["copies"] = c.copies;
        r["nn_ratio"] = c.nn_ratio;
        r["copy_threshold"] = c.threshold;
    };
    if (copies) add_copies(floor_row, unseen_d);
    // The metrics of images that should show `labels` (undefined: no classes); a failing feature
    // network is a message.
    auto score = [&](const at::Tensor& x, const at::Tensor& labels) -> Result<json> {
        Features f;
        try {
            f = fnet->extract(x);
        } catch (const std::exception& e) {
            return Error{command + ": feature network: " + e.what()};
        }
        json r = compute_metrics(metrics.value(), f, labels, real, real_stats, real.spatial.defined() ? &real_spatial : nullptr,
                                 timing);
        if (copies) {
            if (x.dim() != 4 || x.size(1) * x.size(2) * x.size(3) != train_pixels[0].numel())
                return Error{command + ": --metrics copies needs samples of Fashion-MNIST's 28x28 grey images"};
            const auto t0 = Clock::now();
            add_copies(r, nearest_distances(x, train_pixels));
            timing["copies"] += since(t0);
        }
        return r;
    };
    std::printf("%s: model %s\n  features: %s; N = %lld; reference %s (%lld images)\n", command.c_str(),
                model_path.c_str(), fnet->name().c_str(), (long long)N, ref_name.c_str(), (long long)ref_images.size(0));
    if (comm)
        std::printf("  sampling sharded over %d ranks (%s): batch b on rank b mod %d, the same samples as one process\n",
                    comm->world_size(), comm->backend_name().c_str(), comm->world_size());
    if (real_as_samples) {
        std::printf("  samples: %lld training images in place of generated ones (the floor row, timed alone)\n",
                    (long long)floor_images.size(0));
    } else if (vae) {
        std::printf("  samples: the autoencoder's decoder applied to latents drawn from its prior N(0, I) (unscaled; one step, unconditional); seed %lld\n",
                    (long long)seed.value());
    } else {
        std::printf("  guidance: %s; sampler %s, %lld steps (%s spacing); seed %lld (same starting noise for every scale)\n",
                    kind == "cfg" ? "classifier-free scale s" : "classifier scale c on the unconditional path (s = 0)",
                    to_string(*sk).c_str(), (long long)steps.value(), to_string(*spacing).c_str(), (long long)seed.value());
    }
    if (dynamic.value() > 0) std::printf("  x0 clipping: dynamic thresholding at the %.4g percentile of |x0|\n", 100 * dynamic.value());
    std::printf("%10s %9s %9s %8s %10s %8s %10s %10s %10s %9s\n", "scale", "FID", "sFID", "IS", "precision", "recall",
                "agreement", "diversity", "saturated", "time (s)");
    auto print_row = [&](const std::string& label, const json& r, double secs) {
        std::printf("%10s %s %s %s %s %s %s %s %s %9.1f\n", label.c_str(), fmt(r, "fid", 9, 3).c_str(),
                    fmt(r, "sfid", 9, 3).c_str(), fmt(r, "is", 8, 3).c_str(), fmt(r, "precision", 10, 4).c_str(),
                    fmt(r, "recall", 8, 4).c_str(), fmt(r, "agreement", 10, 4).c_str(), fmt(r, "diversity", 10, 4).c_str(),
                    fmt(r, "saturation", 10, 4).c_str(), secs);
        if (r.contains("copies"))
            std::printf("%10s copies %.4f (closer to a training image than 99%% of test images; those: 0.01), nearest training "
                        "image %.3fx as far as a test image's\n", "", r["copies"].get<double>(), r["nn_ratio"].get<double>());
        std::fflush(stdout);
    };
    print_row("floor", floor_row, 0.0);
    json out = {{"command", command}, {"model", model_path}, {"features", fnet->name()}, {"count", N},
                {"reference", ref_name}, {"kind", kind}, {"sampler", to_string(*sk)}, {"steps", steps.value()},
                {"spacing", to_string(*spacing)}, {"seed", seed.value()}, {"device", device->str()}, {"floor", floor_row}, {"rows", json::array()},
                {"dynamic_threshold", dynamic.value()}};
    if (comm) out["ranks"] = comm->world_size();
    if (args.has("bf16")) out["bf16"] = true;
    if (device->is_cuda()) out["precision"] = precision_name(half_inference_dtype());
    if (!nll.is_null()) out["nll"] = nll;
    // Training images as "samples": the floor row is the result, and its timings are the ones reported.
    if (real_as_samples) {
        out["rows"].push_back(floor_row);
        if (through) {
            // The same training images through the autoencoder: a latent model that sampled the
            // encoder's latents exactly would score this, so it bounds every latent model on it.
            const auto t0 = Clock::now();
            const at::Tensor x = decode_all(through, encode_all(through, floor_images, device.value()), device.value());
            const double secs = since(t0);
            auto scored = score(x, train_labels);
            if (!scored) return failure(scored.error());
            json r = scored.value();
            r["seconds"] = secs;
            r["generator"] = "autoencoder-round-trip";
            r["autoencoder"] = args.get("through");
            out["rows"].push_back(r);
            print_row("round trip", r, secs);
        }
    } else if (vae) {
        const auto& ac = vae->config();
        const at::Tensor z = at::randn({N, ac.latent_channels, ac.latent_size(), ac.latent_size()},
                                       make_generator(uint64_t(seed.value())), at::TensorOptions().dtype(at::kFloat));
        const auto t0 = Clock::now();
        // The VAE's own prior: N(0, I) for the unscaled latent (what the KL term pulls towards).
        const at::Tensor x = decode_all(vae, vae->scale_latents(z), device.value());
        const double secs = since(t0);
        auto scored = score(x, at::Tensor());
        if (!scored) return failure(scored.error());
        json r = scored.value();
        r["seconds"] = secs;
        r["generator"] = "vae-prior";
        out["rows"].push_back(r);
        print_row("vae", r, secs);
    } else {
        const int64_t C = model->config.network.num_classes;
        ClassifierGradFn grad;
        if (kind == "classifier") {
            auto cp = resolve_model(args.get("noisy-classifier"));
            if (!cp) return failure(command + ": " + cp.error());
            auto nc = load_noisy_classifier(cp.value(), device.value());
            if (!nc) return failure(command + ": " + nc.error());
            grad = classifier_gradient(nc.value(), NoiseSchedule::create(model->config.schedule).value());
            out["noisy_classifier"] = cp.value();
        }
        timing.clear();
        // Samples one request, scores them against `labels` and adds the row (with `extra`); the
        // message of a failure.
        auto sample_row = [&](const GenerateRequest& req, const at::Tensor& labels, json extra,
                              const std::string& label) -> Status {
            const auto t0 = Clock::now();
            auto x = generate_share(model.value(), req, comm.get());
            if (!x) return Error{command + ": " + x.error()};
            if (device->is_cuda()) torch::cuda::synchronize();
            const double secs = since(t0);
            auto scored = score(x.value().clamp(-1, 1), labels);
            if (!scored) return Error{scored.error()};
            json r = scored.value();
            r["saturation"] = saturated_fraction(x.value());
            r.update(extra);
            r["seconds"] = secs;
            out["rows"].push_back(r);
            print_row(label, r, secs);
            return {};
        };
        if (!from_real.empty()) {
            auto sched = NoiseSchedule::create(model->config.schedule);
            if (!sched) return failure(command + ": " + sched.error());
            // The training images' clean data in model space: a latent model's latents (scaled as it saw them).
            const int64_t n_real = floor_images.size(0);
            const at::Tensor x0 = model->autoencoder ? encode_all(model->autoencoder, floor_images, device.value()) : floor_images;
            std::printf("  from real: the first %lld training images (their classes), noised to the sampler's first timestep <= T\n",
                        (long long)n_real);
            // The same noise for every T and scale: rows differ only in where the chain starts.
            at::Generator g = make_generator(static_cast<uint64_t>(seed.value()) + 17);
            const at::Tensor eps = at::randn(x0.sizes(), g, at::TensorOptions().dtype(at::kFloat));
            for (double s : scales.value())
                for (int64_t T : from_real) {
                    GenerateRequest req = scale_request(*sk, *spacing, steps.value(), seed.value(), batch.value(), n_real, C,
                                                        false, s, ClassifierGradFn(), dynamic.value());
                    if (C > 0) req.labels = train_labels;
                    auto started = start_from_clean(req, sched.value(), x0, eps, T);
                    if (!started) return failure(command + ": --from-real " + std::to_string(T) + ": " + started.error());
                    const int64_t t = started.value();
                    req.bf16 = args.has("bf16");
                    char label[32];
                    std::snprintf(label, sizeof label, "t%lld s%.2g", (long long)t, s);
                    const json extra = {{"scale", s}, {"from_t", t}, {"chain_steps", steps.value() - req.start_step}};
                    if (auto st = sample_row(req, train_labels, extra, label); !st)
                        return failure(st.error() + " (--from-real " + std::to_string(T) + ")");
                }
        }
        for (double s : from_real.empty() ? scales.value() : std::vector<double>{}) {
            GenerateRequest req = scale_request(*sk, *spacing, steps.value(), seed.value(), batch.value(), N, C,
                                                kind == "classifier", s, grad, dynamic.value());
            req.bf16 = args.has("bf16");
            char label[32];
            std::snprintf(label, sizeof label, "%s=%.2f", kind == "cfg" ? "s" : "c", s);
            if (auto st = sample_row(req, balanced_targets(N, C), {{"scale", s}}, label); !st) return failure(st.error());
        }
    }
    std::printf("metric time (s, summed over %zu set%s of N = %lld on %s):", out["rows"].size(),
                out["rows"].size() == 1 ? "" : "s", (long long)N, device->str().c_str());
    for (const auto& [k, v] : timing) std::printf("  %s %.2f", k.c_str(), v);
    std::printf("\n");
    out["metric_seconds"] = timing;
    if (args.has("json"))
        if (auto st = write_file_atomic(args.get("json"), out.dump(2)); !st) return failure(command + ": " + st.error());
    if (args.has("csv")) {
        std::ostringstream csv;
        csv << "kind,scale,fid,sfid,is,precision,recall,agreement,diversity,saturation,seconds,copies,nn_ratio\n";
        auto cell = [](const json& r, const char* k) { return r.contains(k) ? std::to_string(r[k].get<double>()) : std::string(); };
        for (const auto& r : out["rows"])
            csv << kind << ',' << cell(r, "scale") << ',' << cell(r, "fid") << ',' << cell(r, "sfid") << ',' << cell(r, "is") << ','
                << cell(r, "precision") << ',' << cell(r, "recall") << ',' << cell(r, "agreement") << ','
                << cell(r, "diversity") << ',' << cell(r, "saturation") << ',' << cell(r, "seconds") << ',' << cell(r, "copies") << ','
                << cell(r, "nn_ratio") << '\n';
        if (auto st = write_file_atomic(args.get("csv"), csv.str()); !st) return failure(command + ": " + st.error());
    }
    return 0;
}

}  // namespace

int cmd_eval(const std::vector<std::string>& argv) {
    // A text-to-image model's prompt-following has its own report (eval_prompts.cpp).
    for (const auto& a : argv)
        if (a == "--prompts" || a.rfind("--prompts=", 0) == 0) return cmd_eval_prompts(argv);
    return run_eval("eval", argv);
}
int cmd_sweep(const std::vector<std::string>& argv) { return run_eval("sweep", argv); }

// The generative trilemma (Xiao et al. 2022): quality (FID, precision), diversity (recall) and
// sampling cost (network evaluations, seconds) of one GAN step, one VAE-prior step and diffusion at
// a range of step counts, all in one run with the same features, N, reference and device.
int cmd_trilemma(const std::vector<std::string>& argv) {
    Args args("trilemma");
    args.option("count", "samples per row (and reference images)", "10000")
        .option("model", "the diffusion model", "default")
        .option("gan", "the GAN (empty: none)", "fashion-mnist-gan")
        .option("autoencoder", "the autoencoder whose decoder on its prior is the VAE row (empty: none)", "fashion-mnist-autoencoder")
        .option("steps", "diffusion step counts", "1,2,4,8,16,32,64,250,1000")
        .option("samplers", "diffusion samplers", "ddim,dpmpp2m")
        .option("guidance", "classifier-free scale (1: the conditional model alone, one evaluation a step)", "1")
        .option("classifier", "the feature classifier", "fashion-mnist-classifier")
        .option("seed", "random seed (the same for every row)", "0")
        .option("batch", "samples per batch", "1000")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .option("precision", precision_help(), "fp32")
        .option("json", "also write the results as JSON")
        .option("csv", "also write one CSV row per generator and step count")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "trilemma [--count N] [OPTIONS]"); rc >= 0) return rc;
    auto count = args.get_int("count", 10, 1000000);
    auto steps = args.get_int_list("steps", 1, 10000);
    auto guidance = args.get_double("guidance", 0.0, 100.0);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    auto batch = args.get_int("batch", 1, 100000);
    for (const std::string* e : {&count.error(), &steps.error(), &guidance.error(), &seed.error(), &batch.error()})
        if (!e->empty()) return usage(*e);
    std::vector<SamplerKind> samplers;
    {
        std::stringstream ss(args.get("samplers"));
        std::string name;
        while (std::getline(ss, name, ','))
            if (!name.empty()) {
                const auto k = parse_sampler_kind(name);
                if (!k) return usage("trilemma: unknown sampler '" + name + "'");
                samplers.push_back(*k);
            }
    }
    std::vector<int64_t> step_list = steps.value();
    std::sort(step_list.begin(), step_list.end());
    step_list.erase(std::unique(step_list.begin(), step_list.end()), step_list.end());
    auto device = select_device(args.get("device"));
    if (!device) return failure("trilemma: " + device.error());
    if (int rc = apply_precision(args, device.value(), "trilemma"); rc >= 0) return rc;
    const int64_t N = count.value();
    // Models first: a missing one is a message before any work.
    auto model_path = resolve_model(args.get("model"));
    if (!model_path) return failure("trilemma: " + model_path.error());
    auto model = load_model(model_path.value(), device.value());
    if (!model) return failure("trilemma: " + model.error());
    if (model->config.network.kind != NetworkKind::UNet) return usage("trilemma: --model needs an image model");
    Result<GanModel> gan = Error{"none"};
    if (!args.get("gan").empty()) {
        auto p = resolve_model(args.get("gan"));
        if (!p) return failure("trilemma: --gan: " + p.error());
        gan = load_gan(p.value(), device.value());
        if (!gan) return failure("trilemma: " + gan.error());
    }
    Autoencoder vae{nullptr};
    if (!args.get("autoencoder").empty()) {
        auto p = resolve_model(args.get("autoencoder"));
        if (!p) return failure("trilemma: --autoencoder: " + p.error());
        auto ae = load_autoencoder(p.value(), device.value());
        if (!ae) return failure("trilemma: " + ae.error());
        vae = ae.value();
    }
    auto cpath = resolve_model(args.get("classifier"));
    if (!cpath) return failure("trilemma: classifier: " + cpath.error());
    auto clf = load_classifier(cpath.value(), device.value());
    if (!clf) return failure("trilemma: " + clf.error());
    auto fnet = classifier_feature_net(clf.value(), device.value(), "Fashion-MNIST classifier " + cpath.value());
    auto test = load_fashion_mnist(fashion_mnist_dir(), false);
    if (!test) return failure("trilemma: " + test.error());
    auto train = load_fashion_mnist(fashion_mnist_dir(), true);
    if (!train) return failure("trilemma: " + train.error());
    torch::NoGradGuard ng;
    const std::set<std::string> metrics{"fid", "precision", "recall", "agreement", "diversity"};
    Features real = fnet->extract(test->x.narrow(0, 0, std::min<int64_t>(N, test->x.size(0))));
    const FeatureStats real_stats = feature_stats(real.pooled);
    std::map<std::string, double> timing;
    const at::Tensor train_labels = train->labels.narrow(0, 0, std::min<int64_t>(N, train->x.size(0)));
    const json floor = compute_metrics(metrics, fnet->extract(train->x.narrow(0, 0, train_labels.size(0))), train_labels, real,
                                       real_stats, nullptr, timing);
    const int64_t C = model->config.network.num_classes;
    const at::Tensor target = balanced_targets(N, C);
    const uint64_t sd = uint64_t(seed.value());
    const int evals_per_step = guidance.value() == 1.0 || C == 0 ? 1 : 2;

    json out = {{"command", "trilemma"}, {"count", N}, {"device", device->str()}, {"model", model_path.value()},
                {"features", fnet->name()}, {"reference", "fashion-mnist-test"}, {"guidance", guidance.value()},
                {"seed", seed.value()}, {"floor", floor}, {"rows", json::array()}};
    std::printf("trilemma: N = %lld per row on %s; features %s; reference fashion-mnist-test\n", (long long)N,
                device->str().c_str(), fnet->name().c_str());
    std::printf("%-22s %6s %9s %10s %8s %10s %10s %12s\n", "generator", "NFE", "FID", "precision", "recall", "agreement",
                "time (s)", "s / 10k");
    auto row = [&](const std::string& generator, const std::string& sampler, int64_t steps_n, int64_t nfe, const at::Tensor& x,
                   double secs, const at::Tensor& labels) {
        const Features fake = fnet->extract(x.clamp(-1, 1));
        json r = compute_metrics(metrics, fake, labels, real, real_stats, nullptr, timing);
        r["generator"] = generator;
        r["sampler"] = sampler;
        r["steps"] = steps_n;
        r["nfe"] = nfe;
        r["seconds"] = secs;
        r["seconds_per_10k"] = secs * 10000.0 / double(N);
        out["rows"].push_back(r);
        const std::string name = generator + (sampler.empty() ? "" : " " + sampler);
        std::printf("%-22s %6lld %s %s %s %s %10.2f %12.2f\n", name.c_str(), (long long)nfe, fmt(r, "fid", 9, 2).c_str(),
                    fmt(r, "precision", 10, 4).c_str(), fmt(r, "recall", 8, 4).c_str(), fmt(r, "agreement", 10, 4).c_str(), secs,
                    secs * 10000.0 / double(N));
        std::fflush(stdout);
    };
    auto sync = [&] {
        if (device->is_cuda()) torch::cuda::synchronize();
    };
    std::printf("%-22s %6s %s %s %s %s\n", "floor (train vs test)", "-", fmt(floor, "fid", 9, 2).c_str(),
                fmt(floor, "precision", 10, 4).c_str(), fmt(floor, "recall", 8, 4).c_str(), fmt(floor, "agreement", 10, 4).c_str());
    if (gan) {
        sync();
        const auto t0 = Clock::now();
        const at::Tensor x = gan_generate(*gan->generator, N, gan->config.num_classes > 0 ? target : at::Tensor(), sd, batch.value());
        sync();
        row("GAN", "", 1, 1, x, since(t0), gan->config.num_classes > 0 ? target : at::Tensor());
    }
    if (vae) {
        const auto& ac = vae->config();
        const at::Tensor z = at::randn({N, ac.latent_channels, ac.latent_size(), ac.latent_size()}, make_generator(sd),
                                       at::TensorOptions().dtype(at::kFloat));
        sync();
        const auto t0 = Clock::now();
        const at::Tensor x = decode_all(vae, vae->scale_latents(z), device.value());
        sync();
        row("VAE prior", "", 1, 1, x, since(t0), at::Tensor());
    }
    for (SamplerKind sk : samplers) {
        for (int64_t n : step_list) {
            GenerateRequest req;
            req.sampler.kind = sk;
            req.sampler.steps = n;
            req.sampler.eta = sk == SamplerKind::Ddpm ? 1.0 : 0.0;
            req.labels = C > 0 ? target : at::Tensor();
            req.count = N;
            req.seed = sd;
            req.batch = batch.value();
            req.guidance = guidance.value();
            sync();
            const auto t0 = Clock::now();
            auto x = generate(model.value(), req);
            if (!x) {
                std::printf("%-22s %6lld   (%s)\n", ("diffusion " + to_string(sk)).c_str(), (long long)(n * evals_per_step),
                            x.error().c_str());
                continue;
            }
            sync();
            row("diffusion", to_string(sk), n, n * evals_per_step, x.value(), since(t0), C > 0 ? target : at::Tensor());
        }
    }
    if (args.has("json"))
        if (auto st = write_file_atomic(args.get("json"), out.dump(2)); !st) return failure("trilemma: " + st.error());
    if (args.has("csv")) {
        std::ostringstream csv;
        csv << "generator,sampler,steps,nfe,fid,precision,recall,agreement,diversity,seconds,seconds_per_10k\n";
        for (const auto& r : out["rows"])
            csv << r["generator"].get<std::string>() << ',' << r["sampler"].get<std::string>() << ',' << r["steps"].get<int64_t>()
                << ',' << r["nfe"].get<int64_t>() << ',' << r.value("fid", 0.0) << ',' << r.value("precision", 0.0) << ','
                << r.value("recall", 0.0) << ',' << r.value("agreement", 0.0) << ',' << r.value("diversity", 0.0) << ','
                << r["seconds"].get<double>() << ',' << r["seconds_per_10k"].get<double>() << "\n";
        if (auto st = write_file_atomic(args.get("csv"), csv.str()); !st) return failure("trilemma: " + st.error());
    }
    return 0;
}

}  // namespace dlab::app
