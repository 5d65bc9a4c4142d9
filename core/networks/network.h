#pragma once
// core/networks/ -- the networks that predict the noise: the class-conditional UNet (residual blocks
// with a time embedding, self-attention at coarse resolutions, a null class for classifier-free
// guidance) and a small MLP for 2-D points; `network_blocks.h` holds the blocks they share with the
// noise-aware classifier.
//
// Denoising networks: a class-conditional UNet for images and a small MLP for 2-D points. Both take
// (x_t, t, labels) and return the model output (eps, x0 or v, by the prediction type in use).
// Labels equal to `num_classes` are the *null* class used by classifier-free guidance.

#include <memory>
#include <string>
#include <vector>

#include <torch/nn.h>

#include "core/runtime/result.h"

namespace dlab {

/// Which network a config describes.
enum class NetworkKind { UNet, Mlp };
std::string to_string(NetworkKind kind);

/// Architecture of a denoising network; saved in every checkpoint.
struct NetworkConfig {
    NetworkKind kind = NetworkKind::UNet;
    int64_t in_channels = 1;                  ///< image channels (UNet) or point dimension (MLP)
    int64_t image_size = 28;                  ///< UNet input height = width
    int64_t base_channels = 32;               ///< UNet channels at full resolution
    std::vector<int64_t> channel_mult = {1, 2, 2};  ///< per resolution level
    int64_t num_res_blocks = 1;               ///< residual blocks per level
    std::vector<int64_t> attention_resolutions = {7};  ///< feature-map sizes with self-attention
    int64_t attention_heads = 4;
    int64_t num_classes = 10;                 ///< 0: unconditional; else a null class is added
    double dropout = 0.1;
    int64_t groups = 8;                       ///< GroupNorm groups
    int64_t mlp_hidden = 128;                 ///< MLP width
    int64_t mlp_layers = 3;                   ///< MLP hidden layers
    bool learn_sigma = false;                 ///< output 2x channels (hybrid loss)
    /// Text conditioning (UNet only; 0: none): the width of the frozen text encoder's token states,
    /// fed through cross-attention at the attention resolutions and the middle. A text model has no
    /// classes (num_classes 0): its labels index a prompt table (set_prompts), 0 being the null prompt.
    int64_t context_dim = 0;
    int64_t context_length = 16;              ///< tokens per prompt (the tokenizer's context)
    /// Video (UNet only; 0: images): the batch holds clips of `frames` frames one after the other
    /// ([B*T, C, H, W], every frame of a clip with the same t and label), and temporal attention
    /// follows each spatial attention (and the middle's) across the frames of a clip.
    int64_t frames = 0;

    /// Checks every field against its allowed range first (so nothing below divides by zero or
    /// builds a runaway network), then that the sizes fit together (divisibility). The message
    /// names the field, its value and the range.
    Status validate() const;
    /// A lower bound on the parameter count, from the config alone (no allocation): a model
    /// file whose tensors hold fewer numbers cannot be this network, so it is refused before
    /// the network is built.
    int64_t min_parameters() const;
    /// A lower bound on the activation memory one sample takes in a forward pass (bytes, float32,
    /// no grad), for the memory budget of a batch.
    int64_t min_activation_bytes() const;
    /// Output channels: in_channels, doubled with learn_sigma.
    int64_t out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
};

/// The interface every denoising network offers.
class NetworkImpl : public torch::nn::Module {
public:
    /// x: [B,C,H,W] (UNet) or [B,D] (MLP); t: [B] timesteps (any numeric dtype);
    /// labels: [B] int64 in [0, num_classes] (num_classes = null), or undefined for unconditional.
    virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels) = 0;
    virtual const NetworkConfig& config() const = 0;
    /// Number of trainable parameters.
    int64_t parameter_count() const;

    // Text-conditional networks (config().context_dim > 0); the others refuse these calls.
    /// The null prompt's token states [L, D] and validity [L] (bool): what label 0 attends to,
    /// saved with the weights (the encoder's states of the empty prompt).
    virtual void set_null_prompt(const at::Tensor& states, const at::Tensor& valid);
    /// The prompt table: labels 1..P attend to prompts [P, L, D] (valid [P, L] bool, at least one
    /// true per row). A defined `negative` [1, L, D] replaces the null prompt at label 0 (a negative
    /// prompt: guidance then pushes away from it). Replaces the table of an earlier call.
    virtual void set_prompts(const at::Tensor& states, const at::Tensor& valid, const at::Tensor& negative = {},
                             const at::Tensor& negative_valid = {});
    /// Keep the cross-attention weights of every forward pass (for the GUI's per-token maps).
    virtual void record_attention(bool on);
    /// The last forward pass's cross-attention weights, one [B, h*w, L] tensor per layer (mean over
    /// heads), with each layer's side h (= w), coarsest first; empty unless recording.
    virtual std::vector<std::pair<int64_t, at::Tensor>> attention_maps() const;

    /// CUDA in the channels-last layout (fused_ops.h: channels_last_enabled): converts the 4-D
    /// weights in place and from then on runs CUDA forward passes in NHWC (inputs and outputs stay
    /// [B, C, H, W] contiguous): inference, and training on one GPU (trainer.cpp, under its CUDA
    /// graph; the optimiser's moments and the EMA weights must then take the same layout).
    /// Whether this network supports it (image UNets without text or frames; others: false, unchanged).
    virtual bool to_channels_last();
    /// Inference in half precision (`dtype` kHalf or kBFloat16): converts the parameters in place;
    /// forward passes then cast their input to `dtype`, run the layers in it (the sinusoidal time
    /// embedding, the attention softmax and the GroupNorm statistics are computed in float32) and
    /// return float32. For models loaded to sample, not to train. Whether this network supports it
    /// (image UNets without text or frames; others: false, unchanged).
    virtual bool to_half(at::ScalarType dtype);
};
using Network = std::shared_ptr<NetworkImpl>;

/// Builds the network that a config describes (freshly initialised), or says what is wrong.
Result<Network> make_network(const NetworkConfig& config);

/// Sinusoidal embedding of timesteps (Vaswani et al. 2017, as in Ho et al. 2020): [B] -> [B, dim].
at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim, double max_period = 10000.0);

}  // namespace dlab
