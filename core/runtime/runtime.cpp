#include "core/runtime/runtime.h"

#include <dlfcn.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <thread>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "core/runtime/version.h"

namespace dlab {

std::string version() { return DLAB_VERSION_STRING; }

int configure_threads(int threads) {
    int n = threads;
    if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
    if (n <= 0) n = 1;
    at::set_num_threads(n);
    return at::get_num_threads();
}

RuntimeInfo runtime_info() {
    RuntimeInfo info;
    info.torch_version = TORCH_VERSION;
    info.cuda_available = torch::cuda::is_available();
    info.cuda_devices = info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
    info.intra_op_threads = at::get_num_threads();
    info.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
    return info;
}

bool configure_cudnn_benchmark() {
    const char* env = std::getenv("DLAB_CUDNN_BENCHMARK");
    const bool on = env && std::string(env) == "1";
    at::globalContext().setBenchmarkCuDNN(on);
    return on;
}

Result<c10::Device> select_device(const std::string& request) {
    const bool cuda = torch::cuda::is_available();
    if (request.empty() || request == "auto") {
        if (cuda) configure_cudnn_benchmark();
        return cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
    }
    if (request == "cpu") return c10::Device(c10::kCPU);
    if (request.rfind("cuda", 0) == 0) {
        if (!cuda) {
            return Error{"device '" + request +
                         "': CUDA is not available (this LibTorch build or machine has no GPU); "
                         "use --device cpu"};
        }
        int index = 0;
        if (request.size() > 4) {
            if (request[4] != ':') return Error{"device '" + request + "': expected cuda or cuda:N"};
            try {
                size_t used = 0;
                index = std::stoi(request.substr(5), &used);
                if (used != request.size() - 5) throw std::invalid_argument("trailing");
            } catch (const std::exception&) {
                return Error{"device '" + request + "': expected cuda or cuda:N"};
            }
        }
        const int count = static_cast<int>(torch::cuda::device_count());
        if (index < 0 || index >= count) {
            return Error{"device '" + request + "': only " + std::to_string(count) +
                         " CUDA device(s) present"};
        }
        configure_cudnn_benchmark();
        return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
    }
    return Error{"unknown device '" + request + "': expected auto, cpu, cuda or cuda:N"};
}

std::string error_message(const std::exception& e) {
    std::string m;
    if (const auto* c = dynamic_cast<const c10::Error*>(&e)) m = c->what_without_backtrace();
    else m = e.what();
    // LibTorch appends "Exception raised from ..." and frame lists: keep the message itself.
    for (const char* cut : {"\nException raised from", " (Triggered internally at", "\nframe #"})
        if (const auto at = m.find(cut); at != std::string::npos) m.erase(at);
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
}

bool is_out_of_memory(const std::exception& e) {
    const std::string m = error_message(e);
    return m.find("out of memory") != std::string::npos || m.find("Out of memory") != std::string::npos ||
           m.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos;
}

namespace {

// CUDA's free memory through the runtime LibTorch already loaded (core is built without CUDA
// headers, so the one function is looked up by name): cudaMemGetInfo from libcudart, else the
// driver's cuMemGetInfo_v2 (the primary context is current once LibTorch has used the device).
int64_t cuda_free_bytes(c10::DeviceIndex index) {
    using RuntimeInfo = int (*)(size_t*, size_t*);
    using SetDevice = int (*)(int);
    using GetDevice = int (*)(int*);
    static const auto lookup = [](const char* symbol, std::initializer_list<const char*> libraries) -> void* {
        if (void* f = dlsym(RTLD_DEFAULT, symbol)) return f;
        for (const char* lib : libraries)
            if (void* h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD))
                if (void* f = dlsym(h, symbol)) return f;
        return nullptr;
    };
    static const auto runtime_info = reinterpret_cast<RuntimeInfo>(
        lookup("cudaMemGetInfo", {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"}));
    static const auto set_device = reinterpret_cast<SetDevice>(
        lookup("cudaSetDevice", {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"}));
    static const auto get_device = reinterpret_cast<GetDevice>(
        lookup("cudaGetDevice", {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"}));
    static const auto driver_info = reinterpret_cast<RuntimeInfo>(lookup("cuMemGetInfo_v2", {"libcuda.so.1", "libcuda.so"}));
    size_t free = 0, total = 0;
    if (runtime_info && set_device && get_device) {
        // Asked on the device itself; the thread's current device is put back afterwards.
        int current = 0;
        if (get_device(&current) == 0) {
            const bool ok = set_device(index < 0 ? current : index) == 0 && runtime_info(&free, &total) == 0;
            set_device(current);
            if (ok) return int64_t(free);
        }
    }
    if (driver_info && driver_info(&free, &total) == 0) return int64_t(free);
    return -1;
}

}  // namespace

int64_t available_memory_bytes(c10::Device device) {
    if (device.is_cuda()) return cuda_free_bytes(device.index());
    if (!device.is_cpu()) return -1;
    std::ifstream in("/proc/meminfo");
    std::string key;
    int64_t kb = 0;
    std::string unit;
    while (in >> key >> kb >> unit)
        if (key == "MemAvailable:") return kb * 1024;
    return -1;
}

Status check_memory_budget(const std::string& what, int64_t count, int64_t bytes_each, c10::Device device) {
    const int64_t available = available_memory_bytes(device);
    if (available <= 0 || count <= 0 || bytes_each <= 0) return Status::success();
    const int64_t budget = available / 2;
    if (bytes_each <= budget / count) return Status::success();
    int64_t fits = 1;
    while (fits * 2 <= budget / bytes_each) fits *= 2;
    std::ostringstream m;
    m << what << " of " << count << " needs at least " << (count * (bytes_each / 1024) / 1024) << " MiB of working memory but "
      << available / (1024 * 1024) << " MiB are free on " << device.str() << "; use " << fits << " or fewer at a time";
    return Status::failure(m.str());
}

CudaBf16Autocast::CudaBf16Autocast(bool on, bool cache) : on_(on) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
    cache_was_ = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(cache && cache_was_);
    at::autocast::increment_nesting();
}

CudaBf16Autocast::~CudaBf16Autocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_cache_enabled(cache_was_);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
}

}  // namespace dlab
