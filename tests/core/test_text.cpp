// Text for text-to-image: the tokenizer's round trips and errors, the caption attributes on
// hand-made images, per-class thresholds, and captions that never pair a held-out combination.
#include <QtTest/QtTest>

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "core/test_data.h"

#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/networks/network.h"
#include "core/networks/network_blocks.h"
#include "core/sampling/generate.h"
#include "core/training/trainer.h"
#include "core/io/safetensors.h"
#include "core/text/captions.h"
#include "core/text/clip.h"
#include "core/text/tokenizer.h"

using namespace dlab;

namespace {

// A black 28x28 canvas with a rectangle of intensity v (in [0, 1]) at rows r0..r1, columns c0..c1.
at::Tensor canvas_with_box(double v, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    at::Tensor x = at::full({1, 1, 28, 28}, -1.0f);
    x.index_put_({0, 0, at::indexing::Slice(r0, r1 + 1), at::indexing::Slice(c0, c1 + 1)}, float(2 * v - 1));
    return x;
}

// A one-layer CLIP of `width` (= its embedding) with `heads` heads and an 8-channel image encoder.
ClipConfig small_clip(int64_t width, int64_t heads) {
    ClipConfig c;
    c.width = width;
    c.embed_dim = width;
    c.layers = 1;
    c.heads = heads;
    c.image_channels = 8;
    return c;
}

// A small text UNet (16 channels, cross-attention at 14x14 and in the middle) with every weight
// drawn at random, so that the zero-initialised output projections do not hide the text path.
Network random_text_unet(int64_t context_dim, int64_t context_length) {
    NetworkConfig c;
    c.base_channels = 16;
    c.channel_mult = {1, 2};
    c.attention_resolutions = {14};
    c.num_classes = 0;
    c.dropout = 0;
    c.context_dim = context_dim;
    c.context_length = context_length;
    Network net = make_network(c).value();
    torch::NoGradGuard g;
    at::manual_seed(3);
    for (auto& p : net->parameters()) p.copy_(at::randn_like(p) * 0.1);
    net->eval();
    return net;
}

}  // namespace

class TestText : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void wordsAreSplitAndLowerCased() {
        const auto w = split_words("A T-shirt, DARK!  an ankle-boot -- 2 bags-");
        const std::vector<std::string> expected = {"a", "t-shirt", "dark", "an", "ankle-boot", "2", "bags"};
        QCOMPARE(w, expected);
        QVERIFY(split_words("  ,;- ").empty());
    }

    void tokenizerRoundTrips() {
        const Tokenizer tok = Tokenizer::fashion();
        QVERIFY(tok.vocab_size() > 20);
        QCOMPARE(tok.context(), int64_t(16));
        for (const char* text : {"a dark sandal", "an image of a small wide bag", "ankle boot", "a photo of a light t-shirt"}) {
            auto ids = tok.encode(text);
            QVERIFY2(ids.ok(), ids.error().c_str());
            QCOMPARE(ids->size(0), int64_t(16));
            QCOMPARE(ids.value()[0].item<int64_t>(), Tokenizer::kBos);
            QCOMPARE(tok.decode(ids.value()), std::string(text));
            const int64_t n = static_cast<int64_t>(split_words(text).size());
            QCOMPARE(Tokenizer::eos_positions(ids->unsqueeze(0))[0].item<int64_t>(), n + 1);
            QVERIFY(tok.unknown_words(text).empty());
        }
        // Case and punctuation do not matter.
        QVERIFY(tok.encode("A Dark, SANDAL.").value().equal(tok.encode("a dark sandal").value()));
    }

    void unknownAndOverlongPromptsAreReported() {
        const Tokenizer tok = Tokenizer::fashion();
        auto ids = tok.encode("a dark long sleeved pullover");
        QVERIFY(ids.ok());
        QCOMPARE(tok.decode(ids.value()), std::string("a dark <unk> <unk> pullover"));
        const std::vector<std::string> unknown = {"long", "sleeved"};
        QCOMPARE(tok.unknown_words("a dark long sleeved pullover"), unknown);
        const std::string fourteen = "a b c d e f g h i j k l m n";
        QVERIFY(tok.encode(fourteen).ok());
        auto longer = tok.encode(fourteen + " o");
        QVERIFY(!longer.ok());
        QVERIFY2(QString::fromStdString(longer.error()).contains("has 15 words; at most 14 fit"), longer.error().c_str());
        auto batch = tok.encode_batch({"a bag", fourteen + " o p"});
        QVERIFY(!batch.ok());
        QCOMPARE(tok.encode_batch({"a bag", "boot"}).value().size(0), int64_t(2));
    }

    void attributesMeasureHandMadeImages() {
        // A 10 x 20 box (rows x columns) at 80% intensity; a 5 x 4 box at 30%.
        const at::Tensor big = canvas_with_box(0.8, 4, 13, 2, 21), small = canvas_with_box(0.3, 0, 4, 10, 13);
        const at::Tensor m = measure_attributes(at::cat({big, small, at::full({1, 1, 28, 28}, -1.0f)}));
        QCOMPARE(m.size(1), int64_t(3));
        QVERIFY(std::abs(m[0][0].item<double>() - 0.8) < 1e-5);           // brightness of the garment
        QVERIFY(std::abs(m[0][1].item<double>() - 200.0 / 784) < 1e-6);  // area
        QVERIFY(std::abs(m[0][2].item<double>() - 20.0 / 28) < 1e-6);    // bounding-box width
        QVERIFY(std::abs(m[1][0].item<double>() - 0.3) < 1e-5);
        QVERIFY(std::abs(m[1][1].item<double>() - 20.0 / 784) < 1e-6);
        QVERIFY(std::abs(m[1][2].item<double>() - 4.0 / 28) < 1e-6);
        QCOMPARE(m[2].abs().sum().item<double>(), 0.0);  // an empty canvas
    }

    void thresholdsArePerClassQuartiles() {
        // Class 0: brightness 0..1 in 101 steps; class 1: everything at 0.5.
        const at::Tensor v = at::linspace(0, 1, 101, at::kFloat);
        const at::Tensor measured = at::cat({at::stack({v, v, v}, 1), at::full({8, 3}, 0.5f)});
        const at::Tensor labels = at::cat({at::zeros({101}, at::kLong), at::ones({8}, at::kLong)});
        const AttributeThresholds t = fit_attribute_thresholds(measured, labels, 2);
        QVERIFY(std::abs(t.low[0][0].item<double>() - 0.25) < 1e-6);
        QVERIFY(std::abs(t.high[0][0].item<double>() - 0.75) < 1e-6);
        const at::Tensor levels = attribute_levels(measured, labels, t);
        QCOMPARE(levels[0][0].item<int64_t>(), int64_t(-1));
        QCOMPARE(levels[50][0].item<int64_t>(), int64_t(0));
        QCOMPARE(levels[100][0].item<int64_t>(), int64_t(1));
        QCOMPARE(levels.narrow(0, 101, 8).abs().sum().item<int64_t>(), int64_t(0));  // all alike: no words
        // A quarter below and a quarter above (up to ties at the thresholds).
        QCOMPARE((levels.narrow(0, 0, 101).select(1, 0) == -1).sum().item<int64_t>(), int64_t(25));
    }

    void captionsSayWhatWasMeasuredAndNeverAHeldOutPair() {
        const auto& held = default_held_out();
        QCOMPARE(held.front().text(), std::string("dark sandal"));
        int named = 0, with_attribute = 0;
        for (uint64_t i = 0; i < 3000; ++i) {
            const int64_t cls = static_cast<int64_t>(i % 10);
            const int64_t levels[3] = {int64_t(i % 3) - 1, int64_t((i / 3) % 3) - 1, int64_t((i / 9) % 3) - 1};
            const std::string caption = make_caption(cls, levels, i, held);
            QCOMPARE(make_caption(cls, levels, i, held), caption);  // a seed gives one caption
            const PromptMeaning m = read_prompt(caption);
            QVERIFY2(m.cls == cls, caption.c_str());
            QVERIFY2(m.other_words.empty(), caption.c_str());
            for (int a = 0; a < 3; ++a) {
                const int said = m.levels[static_cast<size_t>(a)];
                QVERIFY2(said == 0 || said == levels[a], caption.c_str());  // never a wrong word
                with_attribute += said != 0;
                for (const auto& p : held) QVERIFY2(!(p.cls == cls && p.attribute == a && p.level == said), caption.c_str());
            }
            named += 1;
            QVERIFY(Tokenizer::fashion().unknown_words(caption).empty());
            QVERIFY(Tokenizer::fashion().encode(caption).ok());
        }
        // About 0.7 of the 2/3 of attributes that have a level are named: ~0.47 per attribute.
        const double rate = double(with_attribute) / (3.0 * named);
        QVERIFY2(rate > 0.4 && rate < 0.5, qPrintable(QString::number(rate)));
    }

    void clipConfigIsCheckedBeforeAllocating() {
        nlohmann::json j = to_json(ClipConfig{});
        QVERIFY(clip_config_from_json(j).ok());
        j["heads"] = 3;  // 64 is not divisible by 3
        QVERIFY(QString::fromStdString(clip_config_from_json(j).error()).contains("divisible by heads"));
        j = to_json(ClipConfig{});
        j["width"] = 1 << 30;
        QVERIFY(!clip_config_from_json(j).ok());
        j = to_json(ClipConfig{});
        j["image_channels"] = 12;  // group norm in groups of 8
        QVERIFY(!clip_config_from_json(j).ok());
        j = to_json(ClipConfig{});
        j["layers"] = "two";
        QVERIFY(QString::fromStdString(clip_config_from_json(j).error()).contains("wrong type"));
    }

    // A short real training lowers the contrastive loss; the frozen encoder written to a file and
    // read back gives identical embeddings, twice; padding never changes a text's embedding.
    void clipTrainsAndItsFrozenEmbeddingsAreStable() {
        const LabelledData data = test::fashion_subset(1024);
        const ClipConfig c = small_clip(32, 4);
        ClipTrainConfig tc;
        tc.steps = 60;
        tc.batch = 64;
        tc.lr = 2e-3;
        tc.warmup = 5;
        tc.log_every = 10;
        std::vector<double> losses;
        auto clip = train_clip(data, c, tc, c10::kCPU, [&](const ClipProgress& p) { losses.push_back(p.loss); });
        QVERIFY2(clip.ok(), clip.error().c_str());
        QCOMPARE(losses.size(), size_t(6));
        qInfo("contrastive loss %.3f -> %.3f (chance: log 64 = %.3f)", losses.front(), losses.back(), std::log(64.0));
        QVERIFY2(losses.back() < losses.front() - 0.3, qPrintable(QString("%1 -> %2").arg(losses.front()).arg(losses.back())));
        QTemporaryDir dir;
        const std::string path = dir.filePath("clip.safetensors").toStdString();
        QVERIFY(save_clip(path, clip.value()).ok());
        auto a = load_clip(path, c10::kCPU), b = load_clip(path, c10::kCPU);
        QVERIFY2(a.ok(), a.error().c_str());
        QVERIFY(b.ok());
        torch::NoGradGuard g;
        const at::Tensor ids = a->tokenizer.encode_batch({"a dark sandal", "an image of a large wide coat", "boot"}).value();
        const at::Tensor ea = a->text->embed(ids), eb = b->text->embed(ids), e0 = clip->text->embed(ids);
        QVERIFY(at::equal(ea, eb));
        QVERIFY(at::equal(ea, e0));
        QVERIFY(at::allclose(ea.norm(2, 1), at::ones({3})));
        // The same words in a longer context (more padding): the same embedding.
        Tokenizer wide(std::vector<std::string>(a->tokenizer.words().begin() + 4, a->tokenizer.words().end()), 16);
        QVERIFY(at::equal(wide.encode("a dark sandal").value(), ids[0]));
        QVERIFY(at::allclose(a->text->embed(ids.narrow(1, 0, 10)), ea, 1e-5, 1e-6));  // the longest has 9 tokens
        QCOMPARE(a->held_out.size(), default_held_out().size());
        QVERIFY(at::equal(a->thresholds.low, clip->thresholds.low));
        // A config that asks for more than the file holds is refused before anything is built.
        {
            auto file = load_safetensors(path);
            QVERIFY(file.ok());
            auto meta = nlohmann::json::parse(file->metadata.at("dlab_clip"));
            meta["config"]["width"] = 1024;
            file->metadata["dlab_clip"] = meta.dump();
            const std::string bad = dir.filePath("big.safetensors").toStdString();
            QVERIFY(save_safetensors(bad, file.value()).ok());
            auto refused = load_clip(bad, c10::kCPU);
            QVERIFY(!refused.ok());
            QVERIFY2(QString::fromStdString(refused.error()).contains("does not match the CLIP config"), refused.error().c_str());
            meta["config"]["width"] = 32;
            meta["config"]["layers"] = 3;  // the file has one layer
            file->metadata["dlab_clip"] = meta.dump();
            QVERIFY(save_safetensors(bad, file.value()).ok());
            QVERIFY(QString::fromStdString(load_clip(bad, c10::kCPU).error()).contains("layer2_fc2.weight"));
        }
        // Another kind of file is refused with a message.
        auto wrong = load_clip(resolve_model("default").value(), c10::kCPU);
        QVERIFY(!wrong.ok());
        QVERIFY2(QString::fromStdString(wrong.error()).contains("not a CLIP file"), wrong.error().c_str());
    }

    void crossAttentionWithOneTokenIsAClosedForm() {
        // With one valid token the softmax puts all its weight there: every position gets
        // x + proj(W_v c + b_v), whatever its query; padding tokens' content never matters.
        at::manual_seed(0);
        blocks::CrossAttention att(8, 6, 2, 2);
        torch::NoGradGuard g;
        for (auto& p : att->parameters()) p.copy_(at::randn_like(p) * 0.3);
        const at::Tensor x = at::randn({2, 8, 3, 3});
        at::Tensor ctx = at::randn({2, 4, 6});
        at::Tensor valid = at::zeros({2, 4}, at::kBool);
        valid.index_put_({0, 2}, true);
        valid.index_put_({1, 0}, true);
        att->record = true;
        const at::Tensor y = att(x, ctx, valid);
        for (int64_t b = 0; b < 2; ++b) {
            const int64_t tok = b == 0 ? 2 : 0;
            const at::Tensor v = att->v(ctx[b][tok].unsqueeze(0));                       // [1, 8]
            const at::Tensor added = att->proj(v.view({1, 8, 1, 1})).view({8, 1, 1});  // 1x1 conv of a constant map
            QVERIFY(at::allclose(y[b], x[b] + added, 1e-5, 1e-6));
            QVERIFY(at::allclose(att->weights[b].select(1, tok), at::ones({9})));
        }
        at::Tensor other = ctx.clone();
        other.index_put_({0, 0}, at::randn({6}) * 10);  // a padding token of sample 0
        QVERIFY(at::allclose(att(x, other, valid), y, 1e-6, 1e-7));
        // Two valid tokens: a softmax mix, different from either closed form.
        valid.index_put_({0, 3}, true);
        QVERIFY(!at::allclose(att(x, ctx, valid)[0], y[0], 1e-4, 1e-5));
    }

    void textUNetReadsEachSamplesPrompt() {
        const int64_t L = 5, D = 12;
        Network net = random_text_unet(D, L);
        torch::NoGradGuard g;
        at::manual_seed(1);
        const at::Tensor prompts = at::randn({2, L, D});
        at::Tensor valid = at::ones({2, L}, at::kBool);
        valid.index_put_({1, at::indexing::Slice(2, L)}, false);
        const at::Tensor null = at::randn({L, D});
        at::Tensor null_valid = at::zeros({L}, at::kBool);
        null_valid.index_put_({0}, true);
        net->set_null_prompt(null, null_valid);
        net->set_prompts(prompts, valid);
        const at::Tensor x = at::randn({3, 1, 28, 28});
        const at::Tensor t = at::tensor({10, 500, 900}, at::kLong);
        const at::Tensor out = net->forward(x, t, at::tensor({2, 0, 1}, at::kLong));
        // Each sample alone, with a table of just its own prompt.
        for (int64_t i = 0; i < 3; ++i) {
            const int64_t label = std::array<int64_t, 3>{2, 0, 1}[size_t(i)];
            at::Tensor y = at::zeros({1}, at::kLong);
            if (label > 0) {
                net->set_prompts(prompts.narrow(0, label - 1, 1), valid.narrow(0, label - 1, 1));
                y.fill_(1);
            }
            const at::Tensor alone = net->forward(x.narrow(0, i, 1), t.narrow(0, i, 1), y);
            QVERIFY2(at::allclose(alone, out.narrow(0, i, 1), 1e-4, 1e-5), qPrintable(QString("sample %1").arg(i)));
        }
        // The prompt matters, undefined labels are the null prompt, a negative prompt replaces it.
        net->set_prompts(prompts, valid);
        const at::Tensor x1 = x.narrow(0, 0, 1).repeat({2, 1, 1, 1}), t1 = t.narrow(0, 0, 1).repeat({2});
        const at::Tensor both = net->forward(x1, t1, at::tensor({1, 2}, at::kLong));
        QVERIFY(!at::allclose(both[0], both[1], 1e-3, 1e-3));
        QVERIFY(at::allclose(net->forward(x1, t1, at::Tensor()), net->forward(x1, t1, at::zeros({2}, at::kLong))));
        net->set_prompts(prompts, valid, prompts.narrow(0, 1, 1), valid.narrow(0, 1, 1));
        QVERIFY(at::allclose(net->forward(x1, t1, at::zeros({2}, at::kLong))[0], both[1], 1e-4, 1e-5));
        // Bad tables and labels are refused with a message; a class model refuses prompts.
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, net->forward(x1, t1, at::tensor({0, 3}, at::kLong)));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, net->set_prompts(at::randn({2, L, D + 1}), valid));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, net->set_prompts(prompts, at::zeros({2, L}, at::kBool)));
        Network plain = make_network(NetworkConfig{}).value();
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, plain->set_prompts(prompts, valid));
        NetworkConfig bad;
        bad.context_dim = 8;  // and 10 classes
        QVERIFY(!make_network(bad).ok());
        // Recorded attention: one map per cross-attention layer, [B, side^2, L], rows summing to 1.
        net->record_attention(true);
        net->forward(x1, t1, at::tensor({1, 2}, at::kLong));
        const auto maps = net->attention_maps();
        QVERIFY(maps.size() >= 3);  // 14x14 down and up, the middle at 14 (two levels: 28, 14)
        for (const auto& [side, w] : maps) {
            QCOMPARE(w.size(1), side * side);
            QCOMPARE(w.size(2), L);
            QVERIFY(at::allclose(w.sum(2), at::ones({2, side * side}), 1e-4, 1e-5));
            QVERIFY(at::allclose(w[1].narrow(1, 2, L - 2), at::zeros({side * side, L - 2})));  // padding: never attended
        }
    }

    void textModelTrainsAndSamplesPrompts() {
        // A tiny CLIP, then a tiny text UNet trained on its captions: the loss falls, the model
        // file names its text encoder, and prompts sample finite images through generate().
        const LabelledData data = test::fashion_subset(512);
        const ClipConfig c = small_clip(16, 2);
        ClipTrainConfig ctc;
        ctc.steps = 10;
        ctc.batch = 32;
        auto clip = train_clip(data, c, ctc, c10::kCPU);
        QVERIFY2(clip.ok(), clip.error().c_str());
        QTemporaryDir dir;
        const std::string clip_path = dir.filePath("clip.safetensors").toStdString();
        QVERIFY(save_clip(clip_path, clip.value()).ok());
        auto captioned = caption_dataset(data, clip->tokenizer, 0, clip->held_out, &clip->thresholds);
        QVERIFY2(captioned.ok(), captioned.error().c_str());
        TextTraining text;
        text.clip = std::make_shared<Clip>(std::move(clip.value()));
        text.levels = captioned->levels;
        text.held_out = text.clip->held_out;
        ModelConfig mc;
        mc.network.base_channels = 16;
        mc.network.channel_mult = {1, 2};
        mc.network.attention_resolutions = {14};
        mc.network.num_classes = 0;
        mc.network.context_dim = 16;
        mc.network.context_length = text.clip->tokenizer.context();
        mc.text_encoder = clip_path;
        TrainConfig tc;
        tc.steps = 50;
        tc.batch = 16;
        tc.lr = 2e-3;
        tc.warmup = 0;
        tc.log_every = 10;
        tc.checkpoint_every = 50;
        const std::string run = dir.filePath("run").toStdString();
        std::vector<double> losses;
        TrainHooks hooks;
        hooks.on_progress = [&](const TrainProgress& p) { losses.push_back(p.loss); };
        // Captions without a text network, and a text network without captions, are refused.
        auto no_captions = train(mc, tc, data, c10::kCPU, run, TrainStart::New, hooks);
        QVERIFY(!no_captions.ok());
        QVERIFY2(QString::fromStdString(no_captions.error()).contains("needs captions"), no_captions.error().c_str());
        hooks.text = &text;
        QVERIFY(!train(ModelConfig{}, tc, data, c10::kCPU, run, TrainStart::New, hooks).ok());
        auto r = train(mc, tc, data, c10::kCPU, run, TrainStart::New, hooks);
        QVERIFY2(r.ok(), r.error().c_str());
        QCOMPARE(losses.size(), size_t(5));
        qInfo("text UNet loss %.3f -> %.3f", losses.front(), losses.back());
        QVERIFY2(losses.back() < 0.8 * losses.front(), qPrintable(QString("%1 -> %2").arg(losses.front()).arg(losses.back())));
        auto model = load_model(run + "/model.safetensors", c10::kCPU);
        QVERIFY2(model.ok(), model.error().c_str());
        QVERIFY(model->text_encoder);
        auto enc = encode_prompts(*model->text_encoder, {"a dark sandal", "a large bag"});
        QVERIFY2(enc.ok(), enc.error().c_str());
        GenerateRequest req;
        req.sampler.steps = 3;
        req.count = 4;
        req.guidance = 3;
        req.prompt_states = enc->states;
        req.prompt_valid = enc->valid;
        req.labels = at::tensor({1, 2, 1, 2}, at::kLong);
        auto x = generate(model.value(), req);
        QVERIFY2(x.ok(), x.error().c_str());
        QCOMPARE(x->sizes().vec(), (std::vector<int64_t>{4, 1, 28, 28}));
        QVERIFY(at::isfinite(x.value()).all().item<bool>());
        req.labels = at::tensor({1, 2, 3, 0}, at::kLong);  // prompt 3 does not exist
        QVERIFY(QString::fromStdString(generate(model.value(), req).error()).contains("outside 0..2"));
        // Classes asked of a text model (no prompts): a message, not a crash.
        GenerateRequest classes = req;
        classes.prompt_states = at::Tensor();
        classes.prompt_valid = at::Tensor();
        classes.labels = at::tensor({3, 4, 5, 6}, at::kLong);
        QVERIFY(QString::fromStdString(generate(model.value(), classes).error()).contains("takes prompts, not classes"));
        // Unknown words are named.
        auto unknown = encode_prompts(*model->text_encoder, {"a purple sandal"});
        QVERIFY(!unknown.ok());
        QVERIFY2(QString::fromStdString(unknown.error()).contains("'purple'"), unknown.error().c_str());
        // A model whose text encoder is gone says so.
        QVERIFY(QFile::remove(QString::fromStdString(clip_path)));
        auto orphan = load_model(run + "/model.safetensors", c10::kCPU);
        QVERIFY(!orphan.ok());
        QVERIFY2(QString::fromStdString(orphan.error()).contains("text encoder"), orphan.error().c_str());
    }

    void promptsAreRead() {
        PromptMeaning m = read_prompt("A photo of a DARK ankle boot");
        QCOMPARE(m.cls, int64_t(9));
        QCOMPARE(m.levels[0], -1);
        m = read_prompt("wide small jumper with stripes");
        QCOMPARE(m.cls, int64_t(2));
        QCOMPARE(m.levels[1], -1);
        QCOMPARE(m.levels[2], 1);
        const std::vector<std::string> other = {"with", "stripes"};
        QCOMPARE(m.other_words, other);
        QCOMPARE(read_prompt("something").cls, int64_t(-1));
    }
};

QTEST_APPLESS_MAIN(TestText)
#include "test_text.moc"
