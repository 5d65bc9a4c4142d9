#pragma once
// core/distributed/ -- training on several processes (GPUs or machines) with PyTorch's own
// distributed engine, c10d: a TCPStore rendezvous, a process group over NCCL (CUDA) or Gloo (CPU),
// and a gradient reducer that averages the gradients of every rank in buckets while the backward
// pass still runs.
//
// A rank learns its place from the environment contract of torchrun (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so the same command runs under torchrun, Slurm or a
// Kubernetes job; `diffusionlab-cli train --nproc-per-node N` sets that contract for N local ranks.

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include "core/runtime/result.h"

namespace dlab {

/// One process's place in a distributed run.
struct RankInfo {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    int local_world_size = 1;
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    bool agent_store = false;  ///< torchrun's agent already serves the store (TORCHELASTIC_USE_AGENT_STORE)
    bool distributed() const { return world_size > 1; }
};

/// Reads the torchrun contract from the environment. Without RANK and WORLD_SIZE this is a single
/// process (rank 0 of 1). A variable that is set but not a whole number in range is an error naming it.
Result<RankInfo> rank_info_from_environment();

enum class Backend { Auto, Gloo, Nccl };
/// "auto", "gloo" or "nccl".
Result<Backend> parse_backend(const std::string& name);

/// Whether this build has c10d compiled in, and which of its backends (a pip LibTorch ships c10d
/// and NCCL headers but not gloo's: such a build has NCCL alone).
bool distributed_available();
bool gloo_available();
bool nccl_available();

/// A collective operation failed: another rank stopped, the network went away, or a timeout passed.
struct DistributedError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// One rank's connection to the others: a process group over a TCPStore. The collectives throw
/// DistributedError; the operations run on tensors of the device the communicator was made for
/// (Gloo with CUDA tensors goes through host copies).
class Communicator {
public:
    /// Meets the other ranks at MASTER_ADDR:MASTER_PORT (rank 0 serves the store unless torchrun's
    /// agent does) and builds the process group. Auto picks NCCL for a CUDA device when built with
    /// it, else Gloo. `timeout` bounds the rendezvous and every collective.
    static Result<std::shared_ptr<Communicator>> connect(const RankInfo& info, Backend backend, c10::Device device,
                                                         std::chrono::milliseconds timeout);
    ~Communicator();
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    int rank() const;
    int world_size() const;
    std::string backend_name() const;

    /// In place: every rank ends with the sum over ranks (blocking).
    void allreduce_sum(std::vector<at::Tensor>& tensors);
    /// In place: every rank ends with `root`'s tensors (blocking).
    void broadcast(std::vector<at::Tensor>& tensors, int root = 0);
    /// Every rank ends with every rank's tensor, in rank order (blocking; same shape on every rank).
    std::vector<at::Tensor> all_gather(const at::Tensor& tensor);
    void barrier();

    /// A sum started and not yet waited for (the reducer's buckets).
    class Pending {
    public:
        virtual ~Pending() = default;
        /// Blocks until the sum is in the tensor given to allreduce_sum_async.
        virtual void wait() = 0;
    };
    std::unique_ptr<Pending> allreduce_sum_async(at::Tensor tensor);

private:
    Communicator();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Averages the gradients of `params` over the ranks. Parameters are packed, in reverse order (the
/// order backward produces them), into flat buckets of about `bucket_bytes`; a hook on every
/// parameter copies its gradient into its bucket as backward computes it, and a bucket whose
/// gradients are all in is summed over the ranks at once, while backward goes on with the rest.
/// Buckets are started in the same order on every rank. finish() sums what is left (a parameter
/// that got no gradient counts as zero), waits, and writes the averages into the .grad fields.
class GradientReducer {
public:
    GradientReducer(Communicator& comm, std::vector<at::Tensor> params, int64_t bucket_bytes = 25LL << 20);
    ~GradientReducer();
    GradientReducer(const GradientReducer&) = delete;
    GradientReducer& operator=(const GradientReducer&) = delete;

    /// Before a backward pass.
    void prepare();
    /// After it: every parameter's .grad holds the mean over ranks. Throws DistributedError.
    void finish();
    int64_t bucket_count() const;
    /// Buckets started while backward was still running in the last step (overlap), for reports.
    int64_t overlapped_last_step() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dlab
