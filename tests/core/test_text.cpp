// Text for text-to-image: the tokenizer's round trips and errors, the caption attributes on
// hand-made images, per-class thresholds, and captions that never pair a held-out combination.
#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include "core/text/captions.h"
#include "core/text/tokenizer.h"

using namespace dlab;

namespace {

// A black 28x28 canvas with a rectangle of intensity v (in [0, 1]) at rows r0..r1, columns c0..c1.
at::Tensor canvas_with_box(double v, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    at::Tensor x = at::full({1, 1, 28, 28}, -1.0f);
    x.index_put_({0, 0, at::indexing::Slice(r0, r1 + 1), at::indexing::Slice(c0, c1 + 1)}, float(2 * v - 1));
    return x;
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
