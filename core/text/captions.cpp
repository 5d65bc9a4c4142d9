#include "core/text/captions.h"

#include <algorithm>

#include "core/runtime/runtime.h"
#include "core/sampling/sampler.h"
#include "core/text/tokenizer.h"

namespace dlab {

const std::array<CaptionAttribute, kCaptionAttributes>& caption_attributes() {
    static const std::array<CaptionAttribute, kCaptionAttributes> a = {
        CaptionAttribute{"brightness", "dark", "light"},
        CaptionAttribute{"size", "small", "large"},
        CaptionAttribute{"width", "narrow", "wide"},
    };
    return a;
}

const std::vector<std::vector<std::string>>& fashion_class_words() {
    static const std::vector<std::vector<std::string>> words = {
        {"t-shirt", "top", "tee"},       {"trousers", "pants"},  {"pullover", "sweater", "jumper"},
        {"dress", "gown"},               {"coat", "jacket"},     {"sandal", "sandals"},
        {"shirt", "blouse"},             {"sneaker", "trainer"}, {"bag", "handbag"},
        {"ankle boot", "boot"},
    };
    return words;
}

at::Tensor measure_attributes(const at::Tensor& images) {
    TORCH_CHECK(images.dim() == 4, "measure_attributes: images must be [N, C, H, W]");
    const at::Tensor v = (images.to(at::kFloat).mean(1) + 1) * 0.5;  // [N, H, W] in [0, 1]
    const int64_t N = v.size(0), W = v.size(2);
    const at::Tensor mask = (v > 0.1).to(at::kFloat);
    const at::Tensor area = mask.flatten(1).sum(1);
    const at::Tensor brightness = (v * mask).flatten(1).sum(1) / area.clamp_min(1);
    const at::Tensor size = area / double(v.size(1) * W);
    // Bounding-box width: first and last column holding a garment pixel.
    const at::Tensor cols = mask.amax(1) > 0;  // [N, W]
    const at::Tensor idx = at::arange(W, at::kLong).unsqueeze(0).expand({N, W});
    const at::Tensor first = at::where(cols, idx, at::full_like(idx, W)).amin(1);
    const at::Tensor last = at::where(cols, idx, at::full_like(idx, -1)).amax(1);
    const at::Tensor width = ((last - first + 1).clamp_min(0)).to(at::kFloat) / double(W);
    return at::stack({brightness, size, width}, 1);
}

AttributeThresholds fit_attribute_thresholds(const at::Tensor& measured, const at::Tensor& labels, int64_t classes) {
    AttributeThresholds t;
    t.low = at::zeros({classes, kCaptionAttributes}, at::kFloat);
    t.high = at::ones({classes, kCaptionAttributes}, at::kFloat);
    for (int64_t c = 0; c < classes; ++c) {
        const at::Tensor rows = measured.index_select(0, (labels == c).nonzero().view({-1}));
        if (rows.size(0) < 4) continue;  // too few to have quarters: no attribute words
        t.low[c] = at::quantile(rows, 0.25, 0, false);
        t.high[c] = at::quantile(rows, 0.75, 0, false);
    }
    return t;
}

at::Tensor attribute_levels(const at::Tensor& measured, const at::Tensor& labels, const AttributeThresholds& t) {
    const at::Tensor lo = t.low.index_select(0, labels), hi = t.high.index_select(0, labels);
    return (measured > hi).to(at::kLong) - (measured < lo).to(at::kLong);
}

std::string HeldOutPair::text() const {
    const CaptionAttribute& a = caption_attributes()[static_cast<size_t>(attribute)];
    return std::string(level < 0 ? a.low : a.high) + " " + fashion_class_words()[static_cast<size_t>(cls)].front();
}

const std::vector<HeldOutPair>& default_held_out() {
    static const std::vector<HeldOutPair> pairs = {{5, 0, -1}, {8, 1, +1}, {3, 2, -1}, {4, 0, +1}};
    return pairs;
}

std::string make_caption(int64_t cls, const int64_t* levels, uint64_t seed, const std::vector<HeldOutPair>& held_out) {
    at::Generator gen = make_generator(seed * 0x9e3779b97f4a7c15ULL + 12345);
    const at::Tensor u = at::rand({8}, gen, at::TensorOptions().dtype(at::kDouble));
    const double* r = u.data_ptr<double>();
    std::vector<std::string> adjectives;
    for (int a = 0; a < kCaptionAttributes; ++a) {
        const int level = static_cast<int>(levels[a]);
        if (level == 0 || r[a] >= 0.7) continue;
        const bool held = std::any_of(held_out.begin(), held_out.end(), [&](const HeldOutPair& p) {
            return p.cls == cls && p.attribute == a && p.level == level;
        });
        if (held) continue;
        const CaptionAttribute& info = caption_attributes()[static_cast<size_t>(a)];
        adjectives.push_back(level < 0 ? info.low : info.high);
    }
    if (adjectives.size() > 1 && r[3] < 0.5) std::reverse(adjectives.begin(), adjectives.end());
    const auto& names = fashion_class_words()[static_cast<size_t>(cls)];
    const std::string noun = names[static_cast<size_t>(r[4] * double(names.size())) % names.size()];
    std::string phrase;
    for (const auto& a : adjectives) phrase += a + " ";
    phrase += noun;
    const bool vowel = std::string("aeiou").find(phrase[0]) != std::string::npos;
    const std::string article = vowel ? "an " : "a ";
    switch (static_cast<int>(r[5] * 4) % 4) {
        case 0: return article + phrase;
        case 1: return phrase;
        case 2: return "a photo of " + article + phrase;
        default: return "an image of " + article + phrase;
    }
}

PromptMeaning read_prompt(const std::string& prompt) {
    PromptMeaning m;
    const std::vector<std::string> w = split_words(prompt);
    static const std::vector<std::string> fillers = {"a", "an", "the", "photo", "image", "picture", "of"};
    for (size_t i = 0; i < w.size(); ++i) {
        bool used = false;
        // Class words, the two-word ones first ("ankle boot").
        for (size_t c = 0; c < fashion_class_words().size() && !used; ++c)
            for (const auto& name : fashion_class_words()[c]) {
                const std::vector<std::string> parts = split_words(name);
                if (i + parts.size() > w.size() || !std::equal(parts.begin(), parts.end(), w.begin() + static_cast<long>(i)))
                    continue;
                m.cls = static_cast<int64_t>(c);
                i += parts.size() - 1;
                used = true;
                break;
            }
        for (int a = 0; a < kCaptionAttributes && !used; ++a) {
            const CaptionAttribute& info = caption_attributes()[static_cast<size_t>(a)];
            if (w[i] == info.low || w[i] == info.high) {
                m.levels[static_cast<size_t>(a)] = w[i] == info.low ? -1 : +1;
                used = true;
            }
        }
        if (!used && std::find(fillers.begin(), fillers.end(), w[i]) == fillers.end()) m.other_words.push_back(w[i]);
    }
    return m;
}

}  // namespace dlab
