#pragma once
// core/io/ -- files and the model catalogue. The safetensors reader/writer (`safetensors.h`), model
// files with their JSON config and the checkpoint format (`model_io.h`), where bundled and user
// models are found (`model_catalog.h`), bundled models' manifests (`manifest.h`), and atomic
// writes that never leave half a file (`atomic_file.h`).
//
// A trained model on disk: one safetensors file holding the weights ("model.*"), the EMA weights
// ("ema.*") and, in the metadata key "dlab", a JSON config saying how it was made.

#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "core/latent/autoencoder.h"
#include "core/text/clip.h"
#include "core/networks/network.h"
#include "core/runtime/result.h"
#include "core/io/safetensors.h"
#include "core/forward/schedule.h"

namespace dlab {

/// Everything needed to rebuild and use a model.
struct ModelConfig {
    NetworkConfig network;
    ScheduleConfig schedule;
    PredictionType prediction = PredictionType::Eps;
    std::string dataset;                   ///< e.g. "fashion-mnist", "toy:moons"
    std::vector<std::string> class_names;  ///< one per class, may be empty
    nlohmann::json training = nlohmann::json::object();  ///< how it was trained (free form)
    /// Latent diffusion: the autoencoder whose scaled latents the network models, as a bundled
    /// name, a path relative to the model file's folder, or an absolute path. Empty: pixel space.
    std::string autoencoder;
    /// Latent diffusion trained with per-channel normalised latents (`train --latent-norm channel`):
    /// the shift and scale of each latent channel, set on the autoencoder by load_model(); empty: the
    /// autoencoder's own scale_factor.
    std::vector<double> latent_shift, latent_scale;
    /// Text-to-image: the frozen CLIP file whose text encoder the network was trained with (a
    /// bundled name, a path relative to the model file's folder, or an absolute path). Empty: none.
    std::string text_encoder;
};

/// Rejects JSON numbers that no field may hold: a float beyond +-2^53 (converting it to an integer
/// field would be undefined behaviour; found by fuzz/fuzz_model_config). Called before any config
/// read from outside is converted; `where` names the file or part in the message.
Status check_json_numbers(const nlohmann::json& j, const std::string& where);

nlohmann::json to_json(const ModelConfig& config);
/// Parses a config; unknown enum names or wrong types are errors naming the field.
Result<ModelConfig> model_config_from_json(const nlohmann::json& j);

/// The config stored in a model or checkpoint file (its "dlab" metadata), parsed and validated;
/// the message names `path` and what is missing or wrong.
Result<ModelConfig> stored_model_config(const TensorFile& file, const std::string& path);

/// A model loaded for sampling.
struct LoadedModel {
    ModelConfig config;
    Network network;     ///< in eval mode, on the requested device
    bool used_ema = false;
    std::string path;
    Autoencoder autoencoder{nullptr};  ///< latent models: the decoder (and encoder), on the same device
    std::shared_ptr<Clip> text_encoder;  ///< text-to-image models: the frozen CLIP, on the same device
};

/// A module's parameters and buffers under `prefix` (e.g. "model.").
void add_network_tensors(TensorFile& file, const std::string& prefix, torch::nn::Module& net);
/// Copies tensors `prefix`+name into the module, checking that every name exists with the right
/// shape and dtype; the message names the first mismatch.
Status load_network_tensors(const TensorFile& file, const std::string& prefix, torch::nn::Module& net,
                            const std::string& path);

/// Copies every parameter and buffer of `src` into `dst` by name (e.g. starting weights for a new
/// run or a fine-tuning), after checking all of them: the same names, count and shapes, or nothing is
/// copied and the message (prefixed by `what`) names the first tensor that differs.
Status copy_module_weights(torch::nn::Module& dst, const torch::nn::Module& src, const std::string& what);

/// Writes a model file atomically: weights, optional EMA weights and the config.
Status save_model(const std::string& path, const ModelConfig& config, NetworkImpl& model,
                  NetworkImpl* ema = nullptr);

/// Loads a model file onto `device`, preferring the EMA weights ("ema.*") when present, else
/// "model.*".
Result<LoadedModel> load_model(const std::string& path, c10::Device device, bool prefer_ema = true);

}  // namespace dlab
