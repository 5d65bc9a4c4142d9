// diffusionlab-cli train-clip: the small CLIP of text-to-image (core/text/clip.h), trained
// contrastively on captioned Fashion-MNIST, then evaluated on the test split: zero-shot class
// accuracy, attribute choice given the class (trained and held-out pairs apart), CLIP scores.
#include "app/cli/commands.h"

#include <cstdio>
#include <filesystem>
#include <iostream>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/data/datasets.h"
#include "core/runtime/runtime.h"
#include "core/text/clip.h"

namespace dlab::app {

namespace {

// On the test split: how often the level the image has (low or high, given its class) scores above
// the other level's prompt, over the images of trained pairs and of held-out pairs apart.
nlohmann::json evaluate_clip(Clip& clip, const LabelledData& test) {
    torch::NoGradGuard g;
    nlohmann::json out;
    const at::Tensor predicted = zero_shot_classes(clip, test.x);
    out["zero_shot_accuracy"] = (predicted == test.labels).to(at::kFloat).mean().item<double>();
    auto captioned = caption_dataset(test, clip.tokenizer, 99, {}, &clip.thresholds);
    const at::Tensor levels = captioned->levels;
    // The CLIP score of each test image with its own caption and with another image's.
    const at::Tensor own = clip_score(clip, test.x, captioned->ids);
    const at::Tensor shuffled = clip_score(clip, test.x, captioned->ids.roll(1, 0));
    out["clip_score_own_caption"] = own.mean().item<double>();
    out["clip_score_other_caption"] = shuffled.mean().item<double>();
    int64_t right[2] = {0, 0}, total[2] = {0, 0};
    const int64_t N = test.x.size(0);
    std::vector<at::Tensor> low_ids, high_ids;
    std::vector<int64_t> rows, truth, held;
    for (int64_t i = 0; i < N; ++i) {
        const int64_t c = test.labels[i].item<int64_t>();
        for (int a = 0; a < kCaptionAttributes; ++a) {
            const int64_t level = levels[i][a].item<int64_t>();
            if (level == 0) continue;
            const auto& info = caption_attributes()[static_cast<size_t>(a)];
            const std::string noun = fashion_class_words()[static_cast<size_t>(c)].front();
            low_ids.push_back(clip.tokenizer.encode(std::string("a ") + info.low + " " + noun).value());
            high_ids.push_back(clip.tokenizer.encode(std::string("a ") + info.high + " " + noun).value());
            rows.push_back(i);
            truth.push_back(level);
            bool is_held = false;
            for (const auto& p : clip.held_out) is_held |= p.cls == c && p.attribute == a;
            held.push_back(is_held ? 1 : 0);
        }
    }
    const at::Tensor idx = at::tensor(rows, at::kLong);
    const at::Tensor imgs = test.x.index_select(0, idx);
    const at::Tensor s_low = clip_score(clip, imgs, at::stack(low_ids)), s_high = clip_score(clip, imgs, at::stack(high_ids));
    for (size_t k = 0; k < rows.size(); ++k) {
        const bool says_high = s_high[static_cast<int64_t>(k)].item<double>() > s_low[static_cast<int64_t>(k)].item<double>();
        right[held[k]] += says_high == (truth[k] > 0);
        total[held[k]] += 1;
    }
    out["attribute_accuracy_trained_pairs"] = total[0] ? double(right[0]) / double(total[0]) : 0.0;
    out["attribute_accuracy_held_out_pairs"] = total[1] ? double(right[1]) / double(total[1]) : 0.0;
    out["attribute_images_trained_pairs"] = total[0];
    out["attribute_images_held_out_pairs"] = total[1];
    return out;
}

}  // namespace

int cmd_train_clip(const std::vector<std::string>& argv) {
    Args args("train-clip");
    args.option("out", "the CLIP file (.safetensors)")
        .option("steps", "optimisation steps", "3000")
        .option("batch", "captioned images per step", "256")
        .option("lr", "peak learning rate (warm-up, then cosine decay)", "1e-3")
        .option("width", "text transformer width", "64")
        .option("layers", "text transformer layers", "2")
        .option("image-channels", "image encoder channels (a multiple of 8)", "32")
        .option("seed", "random seed", "0")
        .option("log-every", "steps between progress lines", "100")
        .option("device", "auto, cpu, cuda or cuda:N", "auto")
        .flag("overwrite", "replace an existing file")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "train-clip --out FILE [OPTIONS]"); rc >= 0) return rc;
    if (!args.has("out")) return usage("train-clip: --out FILE is required");
    auto steps = args.get_int("steps", 1, 10000000);
    auto batch = args.get_int("batch", 2, 65536);
    auto lr = args.get_double("lr", 1e-8, 1.0);
    auto width = args.get_int("width", 8, 4096);
    auto layers = args.get_int("layers", 1, 64);
    auto ich = args.get_int("image-channels", 8, 1024);
    auto seed = args.get_int("seed", 0, INT64_MAX);
    auto log_every = args.get_int("log-every", 1, 10000000);
    for (const std::string* e : {&steps.error(), &batch.error(), &lr.error(), &width.error(), &layers.error(), &ich.error(),
                                 &seed.error(), &log_every.error()})
        if (!e->empty()) return usage(*e);
    if (ich.value() % 8 != 0) return usage("train-clip: --image-channels must be a multiple of 8");
    if (width.value() % 4 != 0) return usage("train-clip: --width must be a multiple of the 4 attention heads");
    const std::string out = args.get("out");
    std::error_code ec;
    if (std::filesystem::exists(out, ec) && !args.given("overwrite"))
        return usage("train-clip: " + out + " exists; give --overwrite to replace it (nothing was changed)");
    auto device = select_device(args.get("device"));
    if (!device) return failure("train-clip: " + device.error());
    auto train = load_fashion_mnist(fashion_mnist_dir(), true);
    if (!train) return failure("train-clip: " + train.error());
    auto test = load_fashion_mnist(fashion_mnist_dir(), false);
    if (!test) return failure("train-clip: " + test.error());
    ClipConfig c;
    c.width = width.value();
    c.layers = layers.value();
    c.embed_dim = width.value();
    c.image_channels = ich.value();
    ClipTrainConfig tc;
    tc.steps = steps.value();
    tc.batch = batch.value();
    tc.lr = lr.value();
    tc.seed = static_cast<uint64_t>(seed.value());
    tc.log_every = log_every.value();
    {
        const Tokenizer tok = Tokenizer::fashion();
        auto sample = caption_dataset(train.value(), tok, 0, default_held_out());
        if (!sample) return failure("train-clip: " + sample.error());
        std::cerr << "vocabulary of " << tok.vocab_size() << " words; captions of the first training images:\n";
        for (int i = 0; i < 6; ++i)
            std::cerr << "  " << train->class_names[static_cast<size_t>(train->labels[i].item<int64_t>())] << ": \""
                      << sample->captions[static_cast<size_t>(i)] << "\"\n";
        std::cerr << "held out of training:";
        for (const auto& p : default_held_out()) std::cerr << " \"" << p.text() << "\"";
        std::cerr << "\n";
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto clip = train_clip(train.value(), c, tc, device.value(), [](const ClipProgress& p) {
        std::fprintf(stderr, "step %lld/%lld  loss %.4f  in-batch accuracy %.3f\n", static_cast<long long>(p.step),
                     static_cast<long long>(p.total), p.loss, p.accuracy);
    });
    if (!clip) return failure(clip.error());
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json figures = evaluate_clip(clip.value(), test.value());
    clip->training["seconds"] = secs;
    clip->training["figures"] = figures;
    std::printf("train-clip: %lld steps in %.0f s on %s\n", static_cast<long long>(tc.steps), secs, device->str().c_str());
    std::printf("  zero-shot class accuracy on the test split (prompt \"a CLASS\"): %.4f\n", figures["zero_shot_accuracy"].get<double>());
    std::printf("  attribute level chosen right, given the class: trained pairs %.4f (%lld cases), held-out pairs %.4f (%lld cases)\n",
                figures["attribute_accuracy_trained_pairs"].get<double>(), figures["attribute_images_trained_pairs"].get<long long>(),
                figures["attribute_accuracy_held_out_pairs"].get<double>(), figures["attribute_images_held_out_pairs"].get<long long>());
    std::printf("  CLIP score, test images with their own caption %.2f, with another image's %.2f\n",
                figures["clip_score_own_caption"].get<double>(), figures["clip_score_other_caption"].get<double>());
    if (auto st = save_clip(out, clip.value()); !st) return failure("train-clip: " + st.error());
    std::printf("  written to %s\n", out.c_str());
    return 0;
}

}  // namespace dlab::app
