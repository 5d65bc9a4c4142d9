#pragma once
// Where models are found: "default" and bundled names in the models folders, or a file path.
#include <string>
#include <vector>

#include "core/runtime/result.h"

namespace dlab {

/// The folders searched for bundled models, in order: $DLAB_MODELS_DIR, the install's
/// share/diffusionlab/models, and the source tree's resources/models.
std::vector<std::string> model_dirs();
/// Resolves "default", a bundled name (without .safetensors) or a path to a model file.
Result<std::string> resolve_model(const std::string& name);
/// Bundled model files: (name, path).
std::vector<std::pair<std::string, std::string>> bundled_models();
/// The model the GUI opens at its first start, among `available` names: on a CUDA device the
/// quality tier (fashion-mnist-quality), on a CPU the small live model (fashion-mnist-live), each
/// falling back to the CLI's default (fashion-mnist-cosine); "" when none of them is there.
std::string first_start_model(const std::vector<std::string>& available, bool cuda);

}  // namespace dlab
