#pragma once
// The network's forward pass replayed as a CUDA graph: at the lab's sizes a denoising step is about
// a hundred small kernels, and launching them one by one leaves the GPU idle most of the time. On
// the first call for a shape (batch size, with or without labels) the forward pass is captured
// into a CUDA graph on a side stream after a short warm-up; later calls copy the inputs into the
// graph's static buffers, replay it and return a copy of its output. A parameter changed in place
// (its version moved: an optimizer or EMA step, a load) recaptures them at the next call. Everything around the network
// (guidance mixing with the live scale, the sampler's arithmetic) stays eager, so a guidance change
// still applies at the next step and the outputs equal the eager ones to round-off.
//
// Used only under no-grad, in eval mode, on CUDA, and only in builds against a CUDA LibTorch
// (DLAB_CUDA_GRAPHS); elsewhere, or with the environment variable DLAB_CUDA_GRAPHS=0, it calls the
// network directly. A capture that fails falls back to eager for good with one message on stderr.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/guidance/guidance.h"
#include "core/networks/network.h"

namespace dlab {

class GraphedModel {
public:
    explicit GraphedModel(Network net);
    ~GraphedModel();
    GraphedModel(const GraphedModel&) = delete;
    GraphedModel& operator=(const GraphedModel&) = delete;

    /// net->forward(x, t, labels), from a CUDA graph when possible. `t` and `labels` may be on the
    /// CPU; the result is on the network's device and is the caller's own (not a graph buffer).
    at::Tensor operator()(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels);
    /// Whether graphs are in use (a CUDA network in a CUDA-graph build, not disabled, no failed capture).
    bool active() const;
    /// Graphs captured so far (one per input shape).
    int captured() const;
    /// The network it replays.
    const Network& network() const { return net_; }

private:
    struct Entry;
    Network net_;
    bool active_ = false;
    std::map<std::pair<int64_t, bool>, std::unique_ptr<Entry>> graphs_;
    // The parameters and buffers, and their memory and versions when the graphs were captured: a
    // graph holds tensors made from them (network_blocks.h: Derived), so a change recaptures.
    std::vector<at::Tensor> weights_;
    std::vector<std::pair<const void*, int64_t>> captured_state_;
    void record_weights();        // captured_state_ from weights_
    bool weights_changed() const;  // against captured_state_
};

/// Whether this build can capture CUDA graphs (built against a CUDA LibTorch).
bool cuda_graphs_compiled();

/// The network as a ModelFn: replayed through a shared GraphedModel when `graphs` is true and it
/// is active, else the plain forward pass. With `bf16` (CUDA only) every call runs under bf16
/// autocast (runtime.h, weight-cast cache off so that a graph captured inside stays valid) and
/// returns float32; a graph captured with bf16 is replayed with bf16.
ModelFn model_function(Network net, std::shared_ptr<GraphedModel> graphs = nullptr, bool bf16 = false);

}  // namespace dlab
