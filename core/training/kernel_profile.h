#pragma once
// Where a training step's GPU time goes, from inside the program (issue 17): LibTorch's Kineto
// profiler records every CUDA kernel of a span of steps, graph replays included, and the table
// adds them up by kernel name. The same measure torch.profiler gives the Python peer
// (bench/train_reference.py --profile), so the two tables compare kernel for kernel; unlike Nsight
// Compute it needs no hardware counters. Asked for with DLAB_PROFILE_STEPS=N on a CUDA run.

#include <cstdint>
#include <string>

namespace dlab {

class KernelProfile {
public:
    /// Starts recording the CUDA kernels (`cuda`) or the CPU operators; an empty string, or why it
    /// cannot (a LibTorch without Kineto, a profiler that refused to start).
    /// With `by_operator` (CUDA), each kernel is also tied to the operator that launched it and its
    /// input shapes (an eager run's: a graph replay launches its kernels without operators).
    std::string start(bool cuda, bool by_operator = false);
    /// Stops and returns the table: the kernels by time per step (`steps` steps that took
    /// `wall_ms` in all), with the kernel time a step against the wall time a step.
    std::string stop(int64_t steps, double wall_ms);
    bool running() const { return running_; }

private:
    bool running_ = false, cuda_ = true, by_operator_ = false;
};

/// DLAB_PROFILE_STEPS: how many training steps to profile (0: none).
int64_t profile_steps_asked();
/// DLAB_PROFILE_OPS=1: the profile ties kernels to operators (training then runs eagerly).
bool profile_by_operator_asked();

}  // namespace dlab
