#pragma once
// A bundled model's manifest: name.json beside name.safetensors, saying how the model was trained
// (data, network, command, hardware) and what it measured (figures). Read from outside like any
// file: its size is checked before it is read, its shape before anything uses it, and a figure is
// handed out only as a finite number.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/runtime/result.h"

namespace dlab {

/// The sampling a manifest recommends for its model (the GUI starts a first chain with it).
struct RecommendedSampling {
    std::string sampler;  ///< a sampler's name (ddpm, ddim, dpmpp2m)
    int64_t steps = 0;    ///< 1..10000
    double guidance = 1;  ///< classifier-free scale, 0..100
    std::string spacing;  ///< the sampler's timesteps (trailing, leading, linspace); empty: the sampler's default
};

struct ModelManifest {
    std::string name, summary, dataset, network, training, command, script, hardware;
    std::string tier;      ///< "quality" (the GUI's first model on a GPU), "cpu" (on a CPU) or ""
    std::string sampling;  ///< how to sample it best (sampler, steps, scale), in words
    std::optional<RecommendedSampling> recommended;  ///< "recommended": {"sampler", "steps", "guidance"[, "spacing"]}
    nlohmann::json figures = nlohmann::json::object();  ///< nested objects of numbers and notes
};

/// A manifest is a few KB; larger files are refused before they are read.
constexpr int64_t kMaxManifestBytes = int64_t(1) << 20;
/// Objects and lists nest at most this deep (the bundled ones: 4).
constexpr int kMaxManifestDepth = 16;

/// A file beside a model file: name.safetensors -> name + suffix ("" for other names). The bundled
/// models keep their manifest (".json"), measured sweeps, trilemma and likelihood curves so.
std::string sibling_path(const std::string& model_path, const std::string& suffix);
/// The manifest's path for a model file: name.safetensors -> name.json ("" for other names).
std::string manifest_path(const std::string& model_path);
/// Parses and checks a manifest's text: a JSON object whose known text fields are strings of at
/// most 64 KiB, whose "figures" is an object, nested at most kMaxManifestDepth deep. `source` names
/// the file in messages.
Result<ModelManifest> parse_manifest(const std::string& text, const std::string& source);
/// The manifest beside `model_path`; an error naming the file when it is missing or damaged.
Result<ModelManifest> read_manifest(const std::string& model_path);
/// A figure by its path of keys under "figures" (e.g. {"latent", "s=1", "fid"}): set only when it
/// is a finite number.
std::optional<double> manifest_figure(const ModelManifest& manifest, const std::vector<std::string>& keys);

}  // namespace dlab
