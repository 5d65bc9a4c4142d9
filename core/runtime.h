#pragma once
// Process-level set-up of LibTorch: thread counts and the choice of device.

#include <string>

#include <c10/core/Device.h>

#include "core/result.h"

namespace dlab {

/// What the engine was built against and what it sees at run time.
struct RuntimeInfo {
    std::string torch_version;  ///< e.g. "1.13.0"
    bool cuda_available = false;
    int cuda_devices = 0;
    int intra_op_threads = 0;
    int hardware_threads = 0;
};

/// The engine's version, "MAJOR.MINOR.PATCH".
std::string version();

/// Sets LibTorch's intra-op thread count: `threads` > 0, or the machine's core count when 0.
/// Debian's LibTorch starts at 1 on small machines, so every entry point calls this once.
int configure_threads(int threads = 0);

/// Reads the LibTorch build and the devices present.
RuntimeInfo runtime_info();

/// Picks a device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
/// A CUDA request on a machine without CUDA is an error that says so.
Result<c10::Device> select_device(const std::string& request = "auto");

}  // namespace dlab
