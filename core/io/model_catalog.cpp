#include "core/io/model_catalog.h"

#include <cstdlib>
#include <filesystem>

#include <unistd.h>

#include "core/runtime/version.h"

namespace dlab {

namespace fs = std::filesystem;

std::vector<std::string> model_dirs() {
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("DLAB_MODELS_DIR"); env && *env) dirs.push_back(env);
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) dirs.push_back((exe.parent_path().parent_path() / "share/diffusionlab/models").string());
    dirs.push_back(DLAB_SOURCE_MODELS_DIR);
    return dirs;
}

std::vector<std::pair<std::string, std::string>> bundled_models() {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& dir : model_dirs()) {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            if (e.path().extension() != ".safetensors") continue;
            const std::string name = e.path().stem().string();
            bool seen = false;
            for (const auto& [n, p] : out) seen = seen || n == name;
            if (!seen) out.emplace_back(name, e.path().string());
        }
    }
    return out;
}

Result<std::string> resolve_model(const std::string& name) {
    const std::string wanted = name.empty() || name == "default" ? "fashion-mnist-cosine" : name;
    if (wanted.find('/') != std::string::npos ||
        (wanted.size() > 12 && wanted.compare(wanted.size() - 12, 12, ".safetensors") == 0)) {
        if (!fs::exists(wanted)) return Error{"model file '" + wanted + "' does not exist"};
        return wanted;
    }
    for (const auto& [n, p] : bundled_models())
        if (n == wanted) return p;
    if (fs::exists(wanted)) return wanted;
    std::string known;
    for (const auto& [n, p] : bundled_models()) known += (known.empty() ? "" : ", ") + n;
    return Error{"unknown model '" + name + "' (bundled: " + (known.empty() ? "none found" : known) +
                 "; or give a path to a .safetensors file)"};
}

std::string first_start_model(const std::vector<std::string>& available, bool cuda) {
    std::vector<std::string> order{"fashion-mnist-live", "fashion-mnist-cosine"};
    if (cuda) order.insert(order.begin(), "fashion-mnist-quality");
    for (const auto& name : order)
        for (const auto& a : available)
            if (a == name) return name;
    return {};
}

}  // namespace dlab
