#pragma once
// Prompts for text-to-image models on the command line (sample --prompt, eval --prompts): read from
// a file, encoded by the model's own frozen text encoder and attached to a generation request.
#include <string>
#include <vector>

#include "core/io/model_io.h"
#include "core/runtime/result.h"
#include "core/sampling/generate.h"

namespace dlab::app {

/// One prompt per line; blank lines and lines starting with '#' are skipped. An unreadable or
/// empty file, or more than 100,000 prompts, is an error naming the file.
Result<std::vector<std::string>> read_prompt_file(const std::string& path);

/// Encodes `prompts` (and a non-empty `negative`) with the model's text encoder and sets the
/// request's prompt table; sample i gets prompt i mod P (label (i mod P) + 1). Unknown words and
/// over-long prompts are errors naming the prompt; a model without a text encoder is one too.
Status attach_prompts(const LoadedModel& model, const std::vector<std::string>& prompts, const std::string& negative,
                      GenerateRequest& request);

}  // namespace dlab::app
