#pragma once
// A small CLIP (Radford et al. 2021), trained here on the Fashion-MNIST captions: a transformer text
// encoder and a convolutional image encoder mapped into one embedding space by a symmetric
// contrastive loss, then frozen. The text encoder's token states feed a text-conditional UNet
// through cross-attention; its pooled embedding against the image encoder's is the "CLIP score".

#include <atomic>
#include <functional>
#include <string>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/data/datasets.h"
#include "core/runtime/result.h"
#include "core/text/captions.h"
#include "core/text/tokenizer.h"

namespace dlab {

struct ClipConfig {
    int64_t width = 64;        ///< token width of the text transformer
    int64_t layers = 2;
    int64_t heads = 4;
    int64_t embed_dim = 64;    ///< the joint embedding
    int64_t image_channels = 32;
    int64_t image_size = 28;
    int64_t in_channels = 1;
};
nlohmann::json to_json(const ClipConfig& c);
Result<ClipConfig> clip_config_from_json(const nlohmann::json& j);

/// Text transformer (pre-LayerNorm, padding masked): ids [B, L] -> token states [B, L, width].
class TextEncoderImpl : public torch::nn::Module {
public:
    TextEncoderImpl(const ClipConfig& c, int64_t vocab, int64_t context);
    torch::Tensor forward(const torch::Tensor& ids);
    /// The unit-norm joint embedding [B, embed_dim] of the <eos> token's state.
    torch::Tensor embed(const torch::Tensor& ids);

private:
    struct Layer {
        torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
        torch::nn::Linear qkv{nullptr}, out{nullptr}, fc1{nullptr}, fc2{nullptr};
    };
    ClipConfig c_;
    torch::nn::Embedding tok_{nullptr};
    torch::Tensor pos_;
    std::vector<Layer> layers_;
    torch::nn::LayerNorm ln_final_{nullptr};
    torch::nn::Linear proj_{nullptr};
};
TORCH_MODULE(TextEncoder);

/// Convolutional image encoder: images [B, C, H, W] in [-1, 1] -> unit-norm [B, embed_dim].
class ImageEncoderImpl : public torch::nn::Module {
public:
    explicit ImageEncoderImpl(const ClipConfig& c);
    torch::Tensor forward(const torch::Tensor& x);

private:
    torch::nn::Sequential body_{nullptr};
    torch::nn::Linear proj_{nullptr};
};
TORCH_MODULE(ImageEncoder);

/// The pair with its tokenizer and the caption thresholds it was trained with.
struct Clip {
    ClipConfig config;
    Tokenizer tokenizer = Tokenizer::fashion();
    TextEncoder text{nullptr};
    ImageEncoder image{nullptr};
    torch::Tensor logit_scale;  ///< log of the inverse temperature
    AttributeThresholds thresholds;
    std::vector<HeldOutPair> held_out;
    nlohmann::json training;    ///< how it was trained (steps, batch, figures)
};
Clip make_clip(const ClipConfig& c);

/// Captions of `data` (one per image, drawn from seed), with the thresholds fitted on `data`.
struct CaptionedData {
    std::vector<std::string> captions;
    at::Tensor ids;     ///< [N, context]
    at::Tensor levels;  ///< [N, 3]
    AttributeThresholds thresholds;
};
Result<CaptionedData> caption_dataset(const LabelledData& data, const Tokenizer& tok, uint64_t seed,
                                      const std::vector<HeldOutPair>& held_out,
                                      const AttributeThresholds* thresholds = nullptr);

struct ClipTrainConfig {
    int64_t steps = 2000;
    int64_t batch = 256;
    double lr = 1e-3;
    int64_t warmup = 100;
    uint64_t seed = 0;
    int64_t log_every = 100;
};
struct ClipProgress {
    int64_t step, total;
    double loss, accuracy;  ///< contrastive loss and in-batch image->text accuracy
};

/// Trains the pair contrastively on captioned Fashion-MNIST (every step's batch and captions from
/// (seed, step)); a non-finite loss stops with an error.
Result<Clip> train_clip(const LabelledData& data, const ClipConfig& c, const ClipTrainConfig& tc, c10::Device device,
                        const std::function<void(const ClipProgress&)>& on_progress = {},
                        const std::atomic<bool>* cancel = nullptr);

/// CLIP score: 100 * max(0, cos(image, text)) per pair, images [N, ...] and prompts (ids [N, L]).
at::Tensor clip_score(Clip& clip, const at::Tensor& images, const at::Tensor& ids, int64_t batch = 512);
/// Zero-shot labels: the class whose prompt "a {class word}" scores highest, per image.
at::Tensor zero_shot_classes(Clip& clip, const at::Tensor& images, int64_t batch = 512);

/// Prompts as the text-conditional UNet takes them: the frozen encoder's token states [P, L, width]
/// and the validity of each token [P, L] (bool; padding false), on the encoder's device.
struct PromptStates {
    at::Tensor states, valid;
};
/// Encodes prompts with the frozen text encoder (no gradients). A prompt with words outside the
/// vocabulary or longer than the context is an error naming the prompt and the words.
Result<PromptStates> encode_prompts(Clip& clip, const std::vector<std::string>& prompts);
/// Encodes token ids [P, L] the same way (the trainer's captions).
PromptStates encode_prompt_ids(Clip& clip, const at::Tensor& ids);

/// Writes (atomically, after a finiteness check) and reads a CLIP file (safetensors + JSON config,
/// vocabulary, thresholds and held-out pairs). The reader checks every shape against the config.
Status save_clip(const std::string& path, const Clip& clip);
Result<Clip> load_clip(const std::string& path, c10::Device device);

}  // namespace dlab
