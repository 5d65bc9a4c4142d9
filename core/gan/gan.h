#pragma once
// core/gan/ -- one big step: a class-conditional GAN beside the VAE and diffusion. A DCGAN-style
// generator (z and a class embedding -> a 7x7 map, two nearest-neighbour upsamplings with 3x3
// convolutions, batch norm, tanh) and a projection discriminator (Miyato & Koyama 2018) whose
// convolutions and linear layers are spectrally normalised (Miyato et al. 2018, one power iteration
// per training step); the hinge loss (Lim & Ye 2017); the trainer keeps an EMA of the generator
// (`gan_trainer.h`). A GAN model file is a safetensors file whose metadata key "dlab_gan" holds
// the GanConfig and how it was trained; its tensors are the EMA generator ("g.").

#include <string>

#include <ATen/ATen.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "core/runtime/result.h"

namespace dlab {

struct GanConfig {
    int64_t image_size = 28;     ///< a multiple of 4 (the generator starts at a quarter of it)
    int64_t channels = 1;        ///< 1 or 3
    int64_t num_classes = 10;    ///< 0: unconditional
    int64_t z_dim = 64;
    int64_t base_channels = 64;  ///< the widest map has 4x this
    /// Range checks before any network is built (no division or allocation first).
    Status validate() const;
    int64_t parameter_bytes_bound() const;  ///< an upper bound of both networks' weights in bytes
};
nlohmann::json to_json(const GanConfig& c);
/// Parses and validates (unknown keys and wrong types are errors naming the field).
Result<GanConfig> gan_config_from_json(const nlohmann::json& j);

/// A linear map or convolution whose weight is divided by its largest singular value, estimated by
/// power iteration with a persistent vector u (one iteration per forward pass in training mode).
class SpectralNormImpl : public torch::nn::Module {
public:
    /// weight_shape: [out, in] (linear) or [out, in, k, k] (convolution).
    SpectralNormImpl(std::vector<int64_t> weight_shape, int64_t stride = 1, int64_t padding = 0);
    at::Tensor forward(const at::Tensor& x);
    /// The normalised weight (also refreshes u in training mode).
    at::Tensor normalized_weight();

private:
    at::Tensor weight_, bias_, u_;
    int64_t stride_, padding_;
};
TORCH_MODULE(SpectralNorm);

class GeneratorImpl : public torch::nn::Module {
public:
    explicit GeneratorImpl(const GanConfig& c);
    /// z [B, z_dim], y [B] class indices (ignored when unconditional) -> images [B, C, H, W] in [-1, 1].
    at::Tensor forward(const at::Tensor& z, const at::Tensor& y);
    const GanConfig& config() const { return c_; }

private:
    GanConfig c_;
    torch::nn::Embedding embed_{nullptr};
    torch::nn::Linear fc_{nullptr};
    torch::nn::BatchNorm2d bn0_{nullptr}, bn1_{nullptr}, bn2_{nullptr};
    torch::nn::Conv2d up1_{nullptr}, up2_{nullptr}, out_{nullptr};
};
TORCH_MODULE(Generator);

class DiscriminatorImpl : public torch::nn::Module {
public:
    explicit DiscriminatorImpl(const GanConfig& c);
    /// x [B, C, H, W], y [B] -> logits [B]: psi(phi(x)) + <embed(y), phi(x)> (projection).
    at::Tensor forward(const at::Tensor& x, const at::Tensor& y);

private:
    GanConfig c_;
    SpectralNorm c1_{nullptr}, c2_{nullptr}, c3_{nullptr}, head_{nullptr};
    torch::nn::Embedding embed_{nullptr};
};
TORCH_MODULE(Discriminator);

/// The hinge losses: L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))], L_G = -E[D(G(z))].
at::Tensor hinge_d_loss(const at::Tensor& real_logits, const at::Tensor& fake_logits);
at::Tensor hinge_g_loss(const at::Tensor& fake_logits);

/// A GAN model file: the (EMA) generator with its config.
struct GanModel {
    GanConfig config;
    Generator generator{nullptr};
    nlohmann::json training = nlohmann::json::object();
    std::string path;
};
/// Writes the generator and its config atomically (after a finiteness check).
Status save_gan(const std::string& path, const GanConfig& config, GeneratorImpl& generator,
                const nlohmann::json& training);
/// Reads a GAN model file: config validated, the parameter bound checked against the file before
/// the generator is built, every tensor's shape checked; eval mode on `device`.
Result<GanModel> load_gan(const std::string& path, c10::Device device);
/// Whether a model file is a GAN's (without reading its tensors).
bool is_gan_file(const std::string& path);

/// `count` images from a generator in [-1, 1], with class labels `labels` ([count]; undefined:
/// classes cycling), the latent noise drawn from `seed`. One network evaluation per image.
at::Tensor gan_generate(GeneratorImpl& generator, int64_t count, const at::Tensor& labels, uint64_t seed,
                        int64_t batch = 500);
/// The latent of a seed: z ~ N(0, I) of the generator's size (for interpolation).
at::Tensor gan_latent(const GanConfig& config, uint64_t seed, c10::Device device);

}  // namespace dlab
