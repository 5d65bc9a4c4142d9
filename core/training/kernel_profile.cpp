#include "core/training/kernel_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include <torch/version.h>

#if __has_include(<torch/csrc/autograd/profiler_kineto.h>)
#include <torch/csrc/autograd/profiler_kineto.h>
#define DLAB_HAVE_KINETO 1
#endif

namespace dlab {

int64_t profile_steps_asked() {
    const char* env = std::getenv("DLAB_PROFILE_STEPS");
    if (!env) return 0;
    char* end = nullptr;
    const long long n = std::strtoll(env, &end, 10);
    return end != env && *end == '\0' && n > 0 && n <= 100000 ? n : 0;
}

bool profile_by_operator_asked() {
    const char* env = std::getenv("DLAB_PROFILE_OPS");
    return env && std::string(env) == "1";
}

#ifdef DLAB_HAVE_KINETO
namespace prof = torch::profiler::impl;

std::string KernelProfile::start(bool cuda, bool by_operator) {
    if (running_) return "the profiler is already running";
    cuda_ = cuda;
    by_operator_ = cuda && by_operator;
    try {
        const prof::ProfilerConfig config(prof::ProfilerState::KINETO, /*report_input_shapes=*/by_operator_);
        std::set<prof::ActivityType> activities{cuda ? prof::ActivityType::CUDA : prof::ActivityType::CPU};
        if (by_operator_) activities.insert(prof::ActivityType::CPU);
        torch::autograd::profiler::prepareProfiler(config, activities);
        torch::autograd::profiler::enableProfiler(config, activities);
    } catch (const std::exception& e) {
        return std::string("the profiler did not start: ") + e.what();
    }
    running_ = true;
    return {};
}

std::string KernelProfile::stop(int64_t steps, double wall_ms) {
    if (!running_) return "no profile was recorded\n";
    running_ = false;
    std::unique_ptr<torch::autograd::profiler::ProfilerResult> result;
    try {
        result = torch::autograd::profiler::disableProfiler();
    } catch (const std::exception& e) {
        return std::string("the profiler did not stop: ") + e.what() + "\n";
    }
    std::map<std::string, std::pair<double, int64_t>> by_name;  // ms, calls
    double total = 0;
    int64_t kernels = 0;
    // By operator: a kernel's linked correlation id is that of the operator that launched it.
    std::map<uint64_t, std::string> op_of;
    if (by_operator_)
        for (const auto& e : result->events()) {
            if (e.deviceType() != c10::DeviceType::CPU || e.correlationId() == 0) continue;
            std::string op = e.name();
            if (op.rfind("cuda", 0) == 0) continue;  // CUDA runtime calls, not operators
            if (e.hasShapes()) {
                op += " ";
                int shown = 0;
                for (const auto& shape : e.shapes()) {
                    if (shape.empty() || shown++ == 2) continue;
                    op += "[";
                    for (size_t d = 0; d < shape.size(); ++d) op += (d ? "," : "") + std::to_string(shape[d]);
                    op += "]";
                }
            }
            op_of[e.correlationId()] = op;
        }
    for (const auto& e : result->events()) {
        if ((e.deviceType() == c10::DeviceType::CUDA) != cuda_) continue;
        std::string name = e.name();
        if (name.rfind("Memcpy", 0) != 0 && name.rfind("Memset", 0) != 0) ++kernels;
        // "void ns::kernel<...>(args)": drop "(anonymous namespace)::", then the argument list.
        for (size_t at = name.find("(anonymous namespace)::"); at != std::string::npos; at = name.find("(anonymous namespace)::"))
            name.erase(at, 23);
        name = name.substr(0, name.find('('));
        if (name.rfind("void ", 0) == 0) name.erase(0, 5);
        if (name.size() > 60) name.resize(60);
        if (by_operator_) {
            if (name.size() > 36) name.resize(36);
            const auto op = op_of.find(e.linkedCorrelationId());
            name += " <- " + (op == op_of.end() ? std::string("?") : op->second);
        }
#if TORCH_VERSION_MAJOR >= 2
        const double ms = double(e.durationNs()) * 1e-6;
#else
        const double ms = double(e.durationUs()) * 1e-3;
#endif
        auto& slot = by_name[name];
        slot.first += ms;
        slot.second += 1;
        total += ms;
    }
    std::vector<std::pair<std::string, std::pair<double, int64_t>>> rows(by_name.begin(), by_name.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
    const double n = double(std::max<int64_t>(steps, 1));
    std::ostringstream out;
    char line[512];
    std::snprintf(line, sizeof line,
                  cuda_ ? "profile of %lld steps: %lld kernels, GPU kernel time %.3f ms a step, wall time %.3f ms a step "
                          "(the GPU busy %.0f %% of it)\n"
                        : "profile of %lld steps: %lld operator calls, %.3f ms a step summed over nested calls, wall time "
                          "%.3f ms a step (%.0f %%: an operator's time includes the operators it calls)\n",
                  static_cast<long long>(steps), static_cast<long long>(kernels), total / n, wall_ms / n,
                  wall_ms > 0 ? 100.0 * total / wall_ms : 0.0);
    out << line;
    const char* rows_env = std::getenv("DLAB_PROFILE_ROWS");  // how many rows (default 30)
    const size_t shown = rows_env ? size_t(std::max(1L, std::min(100000L, std::atol(rows_env)))) : 30;
    for (size_t i = 0; i < rows.size() && i < shown; ++i) {
        std::snprintf(line, sizeof line, "%-*s %8.3f ms/step %6.1f calls/step %5.1f %%\n", by_operator_ ? 110 : 60, rows[i].first.c_str(),
                      rows[i].second.first / n, double(rows[i].second.second) / n,
                      total > 0 ? 100.0 * rows[i].second.first / total : 0.0);
        out << line;
    }
    return out.str();
}
#else
std::string KernelProfile::start(bool, bool) { return "kernel profiles need a LibTorch with Kineto"; }
std::string KernelProfile::stop(int64_t, double) { return "no profile was recorded\n"; }
#endif

}  // namespace dlab
