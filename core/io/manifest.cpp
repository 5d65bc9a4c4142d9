#include "core/io/manifest.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "core/sampling/sampler.h"

namespace dlab {

namespace {

constexpr size_t kMaxTextBytes = size_t(64) << 10;

// The depth of nesting, without recursion (a file of a million '[' must not exhaust the stack);
// stops counting once `limit` is passed.
int nesting_depth(const nlohmann::json& root, int limit) {
    std::vector<std::pair<const nlohmann::json*, int>> todo{{&root, 1}};
    int deepest = 0;
    while (!todo.empty()) {
        auto [j, depth] = todo.back();
        todo.pop_back();
        if (!j->is_structured()) continue;
        deepest = std::max(deepest, depth);
        if (deepest > limit) return deepest;
        for (const auto& child : *j) todo.emplace_back(&child, depth + 1);
    }
    return deepest;
}

}  // namespace

std::string sibling_path(const std::string& model_path, const std::string& suffix) {
    const std::string ext = ".safetensors";
    if (model_path.size() <= ext.size() || model_path.compare(model_path.size() - ext.size(), ext.size(), ext) != 0)
        return "";
    return model_path.substr(0, model_path.size() - ext.size()) + suffix;
}

std::string manifest_path(const std::string& model_path) { return sibling_path(model_path, ".json"); }

Result<ModelManifest> parse_manifest(const std::string& text, const std::string& source) {
    if (int64_t(text.size()) > kMaxManifestBytes)
        return Error{source + ": a manifest is at most " + std::to_string(kMaxManifestBytes >> 10) + " KB"};
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Error{source + ": not valid JSON"};
    if (!j.is_object()) return Error{source + ": a manifest is a JSON object"};
    if (nesting_depth(j, kMaxManifestDepth) > kMaxManifestDepth)
        return Error{source + ": nested deeper than " + std::to_string(kMaxManifestDepth) + " levels"};
    ModelManifest m;
    const std::pair<const char*, std::string*> texts[] = {
        {"name", &m.name},         {"summary", &m.summary}, {"dataset", &m.dataset}, {"network", &m.network},
        {"training", &m.training}, {"command", &m.command}, {"script", &m.script},   {"hardware", &m.hardware},
        {"tier", &m.tier},         {"sampling", &m.sampling}};
    for (const auto& [key, field] : texts) {
        const auto it = j.find(key);
        if (it == j.end()) continue;
        if (!it->is_string()) return Error{source + ": \"" + key + "\" must be a text"};
        const auto& s = it->get_ref<const std::string&>();
        if (s.size() > kMaxTextBytes) return Error{source + ": \"" + key + "\" is longer than 64 KB"};
        *field = s;
    }
    if (const auto it = j.find("recommended"); it != j.end()) {
        const std::string what = source + ": \"recommended\" ";
        if (!it->is_object()) return Error{what + "must be an object"};
        RecommendedSampling r;
        const auto sampler = it->find("sampler"), steps = it->find("steps"), guidance = it->find("guidance"),
                   spacing = it->find("spacing");
        if (sampler == it->end() || !sampler->is_string() || sampler->get_ref<const std::string&>().size() > 32)
            return Error{what + "needs a sampler name (a short text)"};
        r.sampler = sampler->get<std::string>();
        if (steps == it->end() || !steps->is_number_integer() || steps->get<int64_t>() < 1 || steps->get<int64_t>() > 10000)
            return Error{what + "needs steps, a whole number in 1..10000"};
        r.steps = steps->get<int64_t>();
        if (guidance != it->end()) {
            if (!guidance->is_number() || !std::isfinite(guidance->get<double>()) || guidance->get<double>() < 0 ||
                guidance->get<double>() > 100)
                return Error{what + "guidance must be a number in 0..100"};
            r.guidance = guidance->get<double>();
        }
        if (spacing != it->end()) {
            if (!spacing->is_string() || !parse_timestep_spacing(spacing->get_ref<const std::string&>()))
                return Error{what + "spacing must be trailing, leading or linspace"};
            r.spacing = spacing->get<std::string>();
        }
        m.recommended = r;
    }
    if (const auto it = j.find("figures"); it != j.end()) {
        if (!it->is_object()) return Error{source + ": \"figures\" must be an object"};
        m.figures = *it;
    }
    return m;
}

Result<ModelManifest> read_manifest(const std::string& model_path) {
    const std::string path = manifest_path(model_path);
    if (path.empty()) return Error{model_path + ": not a .safetensors file, so no manifest beside it"};
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return Error{path + ": no manifest (not a regular file)"};
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) return Error{path + ": cannot read its size: " + ec.message()};
    if (int64_t(size) > kMaxManifestBytes)
        return Error{path + ": " + std::to_string(size >> 10) + " KB; a manifest is at most " +
                     std::to_string(kMaxManifestBytes >> 10) + " KB"};
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in && !in.eof()) return Error{path + ": cannot be read"};
    return parse_manifest(text.str(), path);
}

std::optional<double> manifest_figure(const ModelManifest& manifest, const std::vector<std::string>& keys) {
    const nlohmann::json* j = &manifest.figures;
    for (const auto& k : keys) {
        if (!j->is_object()) return std::nullopt;
        const auto it = j->find(k);
        if (it == j->end()) return std::nullopt;
        j = &*it;
    }
    if (!j->is_number()) return std::nullopt;
    const double v = j->get<double>();
    return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

}  // namespace dlab
