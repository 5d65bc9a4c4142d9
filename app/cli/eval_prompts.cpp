// diffusionlab-cli eval --prompts FILE: how well a text-to-image model follows prompts. For each
// guidance scale: class agreement of the prompt's class word (the feature classifier), accuracy of
// each requested attribute (measured on the samples with the captions' own functions and
// thresholds), CLIP score against the prompt, FID of all samples against the test set, and the
// saturated fraction; per prompt and for the held-out and trained combinations apart.
#include "app/cli/commands.h"

#include <cstdio>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "app/cli/eval_common.h"
#include "app/cli/prompts.h"
#include "core/data/datasets.h"
#include "core/evaluation/classifier.h"
#include "core/evaluation/feature_net.h"
#include "core/evaluation/metrics.h"
#include "core/io/atomic_file.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/runtime/runtime.h"
#include "core/sampling/generate.h"
#include "core/text/captions.h"
#include "core/text/clip.h"

namespace dlab::app {

namespace {

using json = nlohmann::json;

// What one prompt asks for, and whether it names a held-out class-attribute pair.
struct PromptAsk {
    std::string text;
    PromptMeaning meaning;
    bool held_out = false;
};

// Sums over the samples of a group (a prompt, the held-out or the trained prompts).
struct Tally {
    int64_t samples = 0, with_class = 0, class_right = 0, attributes = 0, attributes_right = 0;
    double clip = 0;
    json row() const {
        json r{{"samples", samples}, {"clip_score", samples ? clip / double(samples) : 0.0}};
        if (with_class) r["agreement"] = double(class_right) / double(with_class);
        if (attributes) r["attribute_accuracy"] = double(attributes_right) / double(attributes);
        return r;
    }
    void add(const Tally& o) {
        samples += o.samples, with_class += o.with_class, class_right += o.class_right;
        attributes += o.attributes, attributes_right += o.attributes_right, clip += o.clip;
    }
};

void print_row(const std::string& scale, const std::string& name, const json& r) {
    std::printf("  %-6s %-28s %9s %11s %7s\n", scale.c_str(), name.c_str(), fmt(r, "agreement", 9, 3).c_str(),
                fmt(r, "attribute_accuracy", 11, 3).c_str(), fmt(r, "clip_score", 7, 1).c_str());
}

}  // namespace

int cmd_eval_prompts(const std::vector<std::string>& argv) {
    Args args("eval --prompts");
    args.option("prompts", "a file of prompts, one per line (e.g. resources/prompts/fashion-held-out.txt)")
        .option("model", "a text-to-image model", "fashion-mnist-text")
        .option("count", "samples per prompt and scale", "200")
        .option("scales", "classifier-free guidance scales (the same starting noise for every scale)", "1,3,5")
        .option("dynamic-threshold", "Imagen's dynamic thresholding at this percentile of |x0| (0: static clipping at 1)", "0")
        .option("classifier", "the feature classifier (class agreement, FID)", "fashion-mnist-classifier")
        .option("sampler", "ddpm, ddim or dpmpp2m", "ddim")
        .option("steps", "sampling steps", "50")
        .option("seed", "random seed", "0")
        .option("batch", "samples per chain", "1000")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .option("json", "also write the results as JSON")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "eval --prompts FILE [--model M] [OPTIONS]"); rc >= 0) return rc;
    auto count = args.get_int("count", 1, 1000000);
    auto steps = args.get_int("steps", 1, 100000);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    auto batch = args.get_int("batch", 1, 100000);
    auto dyn = args.get_double("dynamic-threshold", 0.0, 1.0);
    auto scales = args.get_double_list("scales", -100.0, 1000.0);
    for (const std::string* e : {&count.error(), &steps.error(), &seed.error(), &batch.error(), &dyn.error(), &scales.error()})
        if (!e->empty()) return usage(*e);
    const auto sk = parse_sampler_kind(args.get("sampler"));
    if (!sk) return usage("eval: unknown sampler '" + args.get("sampler") + "' (ddpm, ddim or dpmpp2m)");
    if (args.has("json"))
        if (auto st = check_output_path(args.get("json")); !st) return failure("eval: --json: " + st.error());
    auto prompts = read_prompt_file(args.get("prompts"));
    if (!prompts) return failure("eval: --prompts: " + prompts.error());
    auto device = select_device(args.get("device"));
    if (!device) return failure("eval: " + device.error());
    auto path = resolve_model(args.get("model"));
    if (!path) return failure("eval: " + path.error());
    auto model = load_model(path.value(), device.value());
    if (!model) return failure("eval: " + model.error());
    if (!model->text_encoder) return usage("eval: " + path.value() + " is not a text-to-image model; --prompts needs one");
    Clip& clip = *model->text_encoder;
    auto cpath = resolve_model(args.get("classifier"));
    if (!cpath) return failure("eval: classifier: " + cpath.error());
    auto clf = load_classifier(cpath.value(), device.value());
    if (!clf) return failure("eval: " + clf.error());
    auto fnet = classifier_feature_net(clf.value(), device.value(), "Fashion-MNIST classifier " + cpath.value());

    // What each prompt asks for, read with the captions' words.
    std::vector<PromptAsk> asks;
    for (const auto& p : prompts.value()) {
        PromptAsk a{p, read_prompt(p), false};
        for (const HeldOutPair& h : clip.held_out)
            a.held_out = a.held_out || (a.meaning.cls == h.cls && a.meaning.levels[size_t(h.attribute)] == h.level);
        asks.push_back(a);
    }
    const int64_t P = static_cast<int64_t>(asks.size()), N = count.value() * P;
    GenerateRequest req;
    req.count = N;
    req.sampler.kind = *sk;
    req.sampler.steps = steps.value();
    req.sampler.eta = *sk == SamplerKind::Ddpm ? 1.0 : 0.0;
    req.sampler.dynamic_threshold = dyn.value();
    req.seed = static_cast<uint64_t>(seed.value());
    req.batch = batch.value();
    if (auto st = attach_prompts(model.value(), prompts.value(), "", req); !st) return usage("eval: " + st.error());
    const at::Tensor which = req.labels - 1;  // the prompt of each sample
    auto ids = clip.tokenizer.encode_batch(prompts.value());
    if (!ids) return usage("eval: " + ids.error());
    const at::Tensor sample_ids = ids->index_select(0, which);

    // The reference for FID: test images in the prompts' class mix (sample i's reference is a test
    // image of its prompt's class, taken in turn; a prompt without a class word takes any image), so
    // that FID measures the images, not the difference between the prompt set's classes and the test set's.
    auto test = load_fashion_mnist(fashion_mnist_dir(), false);
    if (!test) return failure("eval: " + test.error());
    const int64_t M = test->x.size(0);
    std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(test->num_classes));
    const at::Tensor test_labels = test->labels.contiguous();
    for (int64_t j = 0; j < M; ++j) {
        const int64_t c = test_labels[j].item<int64_t>();
        if (c >= 0 && c < test->num_classes) by_class[size_t(c)].push_back(j);
    }
    std::vector<int64_t> ref_idx;
    std::vector<size_t> taken(by_class.size() + 1, 0);
    for (int64_t i = 0; i < std::min<int64_t>(N, M); ++i) {
        const int64_t c = asks[size_t(which[i].item<int64_t>())].meaning.cls;
        const bool has = c >= 0 && c < test->num_classes && !by_class[size_t(c)].empty();
        const auto& pool = has ? by_class[size_t(c)] : std::vector<int64_t>();
        size_t& k = taken[has ? size_t(c) : by_class.size()];
        ref_idx.push_back(has ? pool[k++ % pool.size()] : static_cast<int64_t>(k++ % size_t(M)));
    }
    torch::NoGradGuard ng;
    const at::Tensor ref_images = test->x.index_select(0, at::tensor(ref_idx, at::kLong));
    const Features real = fnet->extract(ref_images);
    const FeatureStats real_stats = feature_stats(real.pooled);

    std::printf("eval --prompts: model %s, text encoder %s\n  %lld prompts x %lld samples, %s %lld steps%s, seed %lld; "
                "FID against %lld test images in the prompts' class mix (features: %s)\n",
                path.value().c_str(), model->config.text_encoder.c_str(), (long long)P, (long long)count.value(),
                to_string(*sk).c_str(), (long long)steps.value(),
                dyn.value() > 0 ? (", dynamic thresholding at " + std::to_string(dyn.value())).c_str() : ", static clipping",
                (long long)seed.value(), (long long)real.pooled.size(0), fnet->name().c_str());
    std::printf("  the reference's own saturated fraction (pixels at -1 or 1: mostly the black background): %.4f\n",
                saturated_fraction(ref_images));
    std::printf("  held out of training: ");
    for (const auto& h : clip.held_out) std::printf("\"%s\" ", h.text().c_str());
    std::printf("\n\n  %-6s %-28s %9s %11s %7s\n", "scale", "prompt", "agreement", "attributes", "CLIP");
    json out{{"model", path.value()}, {"text_encoder", model->config.text_encoder}, {"prompts", prompts.value()},
             {"count_per_prompt", count.value()}, {"dynamic_threshold", dyn.value()}, {"rows", json::array()},
             {"reference_saturation", saturated_fraction(ref_images)}};
    for (double s : scales.value()) {
        req.guidance = s;
        auto x = generate(model.value(), req);
        if (!x) return failure("eval: " + x.error());
        const at::Tensor images = x.value();
        const Features fake = fnet->extract(images);
        const at::Tensor predicted = fake.logits.argmax(1).to(at::kCPU);
        // Levels measured relative to the asked class (the predicted one where the prompt names none).
        std::vector<int64_t> asked_cls(static_cast<size_t>(N));
        for (int64_t i = 0; i < N; ++i) {
            const int64_t c = asks[size_t(which[i].item<int64_t>())].meaning.cls;
            asked_cls[size_t(i)] = c >= 0 ? c : predicted[i].item<int64_t>();
        }
        const at::Tensor cls_t = at::tensor(asked_cls, at::kLong);
        const at::Tensor levels = attribute_levels(measure_attributes(images), cls_t, clip.thresholds).contiguous();
        const at::Tensor score = clip_score(clip, images, sample_ids);
        std::vector<Tally> per(static_cast<size_t>(P));
        for (int64_t i = 0; i < N; ++i) {
            const PromptAsk& a = asks[size_t(which[i].item<int64_t>())];
            Tally& t = per[size_t(which[i].item<int64_t>())];
            ++t.samples;
            t.clip += score[i].item<double>();
            if (a.meaning.cls >= 0) {
                ++t.with_class;
                t.class_right += predicted[i].item<int64_t>() == a.meaning.cls;
            }
            for (int k = 0; k < kCaptionAttributes; ++k) {
                if (a.meaning.levels[size_t(k)] == 0) continue;
                ++t.attributes;
                t.attributes_right += levels[i][k].item<int64_t>() == a.meaning.levels[size_t(k)];
            }
        }
        Tally held, trained;
        const std::string sc = fmt(json{{"s", s}}, "s", 0, 1);
        for (int64_t p = 0; p < P; ++p) {
            (asks[size_t(p)].held_out ? held : trained).add(per[size_t(p)]);
            json r = per[size_t(p)].row();
            r["scale"] = s;
            r["prompt"] = asks[size_t(p)].text;
            r["held_out"] = asks[size_t(p)].held_out;
            print_row(sc, "\"" + asks[size_t(p)].text + "\"" + (asks[size_t(p)].held_out ? " *" : ""), r);
            out["rows"].push_back(r);
        }
        std::map<std::string, double> timing;
        json all = compute_metrics({"fid", "precision", "recall"}, fake, at::Tensor(), real, real_stats, nullptr, timing);
        all["saturation"] = saturated_fraction(images);
        all["scale"] = s;
        json h = held.row(), t = trained.row();
        h["scale"] = s, t["scale"] = s;
        out["held_out"].push_back(h);
        out["trained"].push_back(t);
        out["all"].push_back(all);
        print_row(sc, "held-out pairs (*)", h);
        print_row(sc, "trained pairs", t);
        std::printf("  %-6s all samples: FID %.2f  precision %.3f  recall %.3f  saturated %.4f\n\n", sc.c_str(),
                    all.value("fid", 0.0), all.value("precision", 0.0), all.value("recall", 0.0), all.value("saturation", 0.0));
    }
    std::printf("  agreement: the classifier's class is the prompt's class word; attributes: the level measured on the\n"
                "  sample (its class's quartiles, as in the captions) is the one asked for (chance about 0.25);\n"
                "  CLIP: 100 x cosine of image and prompt (real test images with their own caption score about 60);\n"
                "  FID: against test images of each prompt's class (a test image repeats when a class has fewer than asked)\n");
    if (args.has("json"))
        if (auto st = write_file_atomic(args.get("json"), out.dump(2)); !st) return failure("eval: " + st.error());
    return 0;
}

}  // namespace dlab::app
