#include "app/cli/prompts.h"

#include <fstream>

#include "core/text/clip.h"

namespace dlab::app {

Result<std::vector<std::string>> read_prompt_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return Error{path + ": cannot read the prompt file"};
    std::vector<std::string> prompts;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line[first] == '#') continue;
        prompts.push_back(line.substr(first));
        if (prompts.size() > 100000) return Error{path + ": more than 100,000 prompts"};
    }
    if (prompts.empty()) return Error{path + ": no prompts (one per line; '#' starts a comment)"};
    return prompts;
}

Status attach_prompts(const LoadedModel& model, const std::vector<std::string>& prompts, const std::string& negative,
                      GenerateRequest& req) {
    if (model.config.network.context_dim <= 0 || !model.text_encoder)
        return Status::failure(model.path + " is not a text-to-image model (it takes classes, not prompts)");
    if (prompts.empty()) return Status::failure("no prompt given");
    auto enc = encode_prompts(*model.text_encoder, prompts);
    if (!enc) return Status::failure(enc.error());
    req.prompt_states = enc->states;
    req.prompt_valid = enc->valid;
    if (!negative.empty()) {
        auto neg = encode_prompts(*model.text_encoder, {negative});
        if (!neg) return Status::failure("negative " + neg.error());
        req.negative_states = neg->states;
        req.negative_valid = neg->valid;
    }
    const int64_t N = req.count, P = static_cast<int64_t>(prompts.size());
    req.labels = at::arange(N, at::kLong).remainder(P) + 1;
    return Status::success();
}

}  // namespace dlab::app
