#pragma once
// core/latent/ -- latent diffusion: a KL autoencoder compresses 28x28 images to 4x8x8 latents,
// scaled to unit variance; diffusion models trained on those latents are decoded back to pixels
// by generate() and the views.
//
// A KL-regularised autoencoder (Rombach et al. 2022, "LDM"): images are encoded to a small latent
// (for Fashion-MNIST padded to 32x32: 4x8x8) and decoded back. Diffusion then runs on the latents,
// scaled to unit variance by a factor measured on the data and stored in the config.

#include <atomic>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn.h>
#include <nlohmann/json.hpp>

#include "core/evaluation/classifier.h"
#include "core/data/datasets.h"
#include "core/runtime/result.h"

namespace dlab {

struct AutoencoderConfig {
    int64_t in_channels = 1;
    int64_t image_size = 28;          ///< the images' side (before padding)
    int64_t pad = 2;                  ///< border added before encoding (28 + 2*2 = 32), cropped after decoding
    int64_t base_channels = 64;
    std::vector<int64_t> channel_mult = {1, 2, 2};  ///< a halving between two levels: 32 -> 8
    int64_t num_res_blocks = 1;
    int64_t latent_channels = 4;
    int64_t groups = 8;
    double scale_factor = 1.0;        ///< latents = posterior mean * scale_factor (unit variance on the data)
    double latent_clip = 5.0;         ///< samplers clip predicted latents to +-this (5 standard deviations)
    /// Per-channel normalisation (both empty, or one entry per latent channel): latents =
    /// (posterior mean - latent_shift[c]) * latent_scale[c] instead of posterior mean * scale_factor.
    /// A latent diffusion model trained with `train --latent-norm channel` stores its own pair and
    /// load_model() sets it here; autoencoder files written so far have none.
    std::vector<double> latent_shift, latent_scale;
    std::string dataset;              ///< what it was trained on (e.g. "fashion-mnist")
    std::vector<std::string> class_names;
    nlohmann::json training = nlohmann::json::object();  ///< how it was trained and its figures

    Status validate() const;
    int64_t padded_size() const { return image_size + 2 * pad; }
    int64_t latent_size() const { return padded_size() >> (channel_mult.size() - 1); }
};
nlohmann::json to_json(const AutoencoderConfig& c);
Result<AutoencoderConfig> autoencoder_config_from_json(const nlohmann::json& j);

class AutoencoderImpl : public torch::nn::Module {
public:
    explicit AutoencoderImpl(const AutoencoderConfig& config);
    /// x [B,C,H,W] in [-1, 1] (H = image_size) -> posterior mean and log-variance [B,L,h,w] (unscaled).
    std::pair<at::Tensor, at::Tensor> encode_moments(const at::Tensor& x);
    /// Unscaled latents -> images [B,C,H,W] (not clamped).
    at::Tensor decode_raw(const at::Tensor& z);
    /// Images with the border the encoder sees (pad on every side, filled with -1 = black).
    at::Tensor pad_images(const at::Tensor& x) const;
    /// Unscaled latents of any even side -> the decoder's whole output, border included
    /// (latents [B,L,h,w] -> [B,C,4h,4w] for two halvings); decode_raw crops it.
    at::Tensor decode_padded(const at::Tensor& z);
    /// Scaled (unit-variance) latents: the posterior mean times scale_factor (or normalised per channel).
    at::Tensor encode(const at::Tensor& x);
    /// Posterior-space latents [B,L,h,w] -> the scaled latents diffusion models see, and back.
    at::Tensor scale_latents(const at::Tensor& raw) const;
    at::Tensor unscale_latents(const at::Tensor& z) const;
    /// A posterior-space spread (a standard deviation) in the units of the scaled latents.
    at::Tensor scale_spread(const at::Tensor& raw_std) const;
    /// Scaled latents -> images in [-1, 1] (clamped).
    at::Tensor decode(const at::Tensor& z);
    const AutoencoderConfig& config() const { return config_; }
    AutoencoderConfig& mutable_config() { return config_; }

private:
    AutoencoderConfig config_;
    torch::nn::Sequential encoder_{nullptr}, decoder_{nullptr};
};
TORCH_MODULE(Autoencoder);

/// Optimisation settings of train_autoencoder.
struct AutoencoderTrainConfig {
    int64_t steps = 20000;
    int64_t batch = 128;
    double lr = 5e-4;
    double kl_weight = 1e-4;          ///< on the KL per pixel (sum over latent elements / pixels)
    double perceptual_weight = 0.0;   ///< MSE of the classifier's penultimate features (0: off)
    /// Weight of the scale-equivariance term (Skorokhodov et al. 2025, "Improving the diffusability
    /// of autoencoders"): the L1 between the decoding of the latents averaged over 2x2 blocks and the
    /// padded images averaged over the matching blocks. It asks the latents' coarse half to carry the
    /// image's coarse half, which takes high-frequency energy out of the latent space (0: off).
    double scale_equivariance = 0.0;
    uint64_t seed = 0;
    int64_t log_every = 200;
};

struct AutoencoderProgress {
    int64_t step = 0, total = 0;
    double loss = 0, l1 = 0, kl = 0, perceptual = 0, equivariance = 0, images_per_s = 0;
};

/// Trains an autoencoder on `data` (Adam, L1 + KL [+ perceptual], reparameterised latent samples);
/// `perceptual` is the bundled classifier (frozen) when perceptual_weight > 0. The result is in
/// eval mode with scale_factor measured on (up to 10,000 of) the training images. When `cancel` is
/// set, training stops there and the model reached is returned (config.training.steps_done).
/// `init` (optional): start from this autoencoder's weights (fine-tuning); its architecture must be
/// `config`'s (checked tensor by tensor before anything is trained), its latent normalisation is dropped.
Result<Autoencoder> train_autoencoder(AutoencoderConfig config, const AutoencoderTrainConfig& train,
                                      const LabelledData& data, c10::Device device, Classifier* perceptual,
                                      const std::function<void(const AutoencoderProgress&)>& on_progress = {},
                                      const std::atomic<bool>* cancel = nullptr, Autoencoder* init = nullptr);

/// The share of the latents' variance above half their resolution: sum |z - up(avg2x2(z))|^2 over
/// sum |z - channel mean|^2 on latents [N,L,h,w] (h, w even). White noise has 0.75, a latent that is
/// constant over 2x2 blocks 0. What "high-frequency energy" means for the diffusability of a latent space.
double latent_high_frequency_share(const at::Tensor& latents);

/// 1 / std of the posterior means over `data` (batched, no grad).
double measure_latent_scale(Autoencoder& ae, const at::Tensor& images, c10::Device device);
/// Per-channel mean and 1 / std of posterior-space latents [N,L,h,w] (for latent_shift/latent_scale).
std::pair<std::vector<double>, std::vector<double>> measure_channel_norm(const at::Tensor& raw_latents);
/// Checks a per-channel normalisation for `channels` latent channels: both empty, or both of that
/// size with finite shifts and finite positive scales; the message starts with `where`.
Status check_channel_norm(const std::vector<double>& shift, const std::vector<double>& scale, int64_t channels,
                          const std::string& where);
/// Encodes images to scaled latents (batched, no grad) on `device`; returned on the CPU.
at::Tensor encode_all(Autoencoder& ae, const at::Tensor& images, c10::Device device);
/// Images' posterior means and standard deviations, exp(log-variance / 2), unscaled (posterior
/// space; batched, no grad) on `device`; returned on the CPU.
std::pair<at::Tensor, at::Tensor> encode_all_moments(Autoencoder& ae, const at::Tensor& images, c10::Device device);
/// Decodes scaled latents (batched, no grad); returned on the CPU.
at::Tensor decode_all(Autoencoder& ae, const at::Tensor& latents, c10::Device device);
/// Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak 2), over the whole set.
double psnr(const at::Tensor& a, const at::Tensor& b);

/// Files: safetensors with tensors "ae.*" and the config as JSON in the metadata key "dlab_autoencoder".
Status save_autoencoder(const std::string& path, Autoencoder& ae);
Result<Autoencoder> load_autoencoder(const std::string& path, c10::Device device);
/// True when the file's metadata marks it as an autoencoder (reads the header only).
bool is_autoencoder_file(const std::string& path);

}  // namespace dlab
