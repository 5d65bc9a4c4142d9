#pragma once
// core/text/ -- words for text-to-image: captions of Fashion-MNIST measured on each image, the
// word-level tokenizer, and (clip.h) the small CLIP-style text and image encoders.
//
// A caption names an image's class (with synonyms) and some of three attributes measured on the
// image itself, each relative to its class (the darkest quarter of the sandals are "dark"):
//   brightness: mean intensity of the garment's pixels          -> "dark" / "light"
//   size:       fraction of the canvas the garment covers       -> "small" / "large"
//   width:      width of the garment's bounding box             -> "narrow" / "wide"
// in a few phrasings ("a dark sandal", "a photo of a small wide bag", ...). Some class-attribute
// combinations are held out of training (no caption pairs them), to see whether a model composes
// words it has only seen apart.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace dlab {

constexpr int kCaptionAttributes = 3;

/// One attribute: its name and the words of its low and high levels.
struct CaptionAttribute {
    const char* name;
    const char* low;
    const char* high;
};
const std::array<CaptionAttribute, kCaptionAttributes>& caption_attributes();

/// The words for each Fashion-MNIST class (the first is the canonical one).
const std::vector<std::vector<std::string>>& fashion_class_words();

/// Raw measurements [N, 3] (brightness, size, width; all in [0, 1]) of images [N, 1, H, W] in
/// [-1, 1]. The garment is the pixels brighter than 10% of full scale; an empty image measures 0.
at::Tensor measure_attributes(const at::Tensor& images);

/// Per-class quartiles of the measurements: below `low` is the low word, above `high` the high one.
struct AttributeThresholds {
    at::Tensor low, high;  ///< [C, 3] float
};
AttributeThresholds fit_attribute_thresholds(const at::Tensor& measured, const at::Tensor& labels, int64_t classes);
/// Levels [N, 3] int64: -1 (low word), 0 (no word), +1 (high word).
at::Tensor attribute_levels(const at::Tensor& measured, const at::Tensor& labels, const AttributeThresholds& t);

/// A class-attribute pair that no training caption contains.
struct HeldOutPair {
    int64_t cls;
    int attribute;
    int level;  ///< -1 or +1
    std::string text() const;  ///< e.g. "dark sandal"
};
/// The held-out pairs of the bundled text-to-image model: dark sandal, large bag, narrow dress, light coat.
const std::vector<HeldOutPair>& default_held_out();

/// The caption of one image (class, levels [3]) drawn from `seed`: each measured attribute is named
/// with probability 0.7 (never a held-out pair), a class word and a phrasing picked at random.
std::string make_caption(int64_t cls, const int64_t* levels, uint64_t seed, const std::vector<HeldOutPair>& held_out);

/// What a prompt asks for, read with the captions' own words: the class (-1: none named) and the
/// level of each attribute (0: not named); words that are neither are listed.
struct PromptMeaning {
    int64_t cls = -1;
    std::array<int, kCaptionAttributes> levels{};
    std::vector<std::string> other_words;
};
PromptMeaning read_prompt(const std::string& prompt);

}  // namespace dlab
