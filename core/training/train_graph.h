#pragma once
// The training step replayed as one CUDA graph (issue 17). At the lab's sizes a training step is
// a few hundred small kernels (forward, backward, the gradient clip, AdamW, the EMA) and the GPU
// waits on their launches; captured once, the whole step is one launch.
//
// Everything that changes between steps lives in the graph's static buffers: the step's random
// draws (drawn on the CPU from (seed, step) as in the eager loop, then copied in), and the
// learning rate, Adam's step count and the EMA decay (device scalars the captured kernels read).
// The optimiser is LibTorch's fused AdamW reading its learning rate and step from those scalars;
// the gradient clip scales on the device without reading the norm back. Dropout draws from the
// default CUDA generator, which the graph registers: reseeding it before a replay gives the
// replay that step's masks.
//
// The first three steps run the same operations eagerly (cuDNN picks its algorithms, the
// allocator its blocks), the fourth captures and replays. The loop runs on a side stream while
// this object lives. Only in builds against a CUDA LibTorch (DLAB_CUDA_GRAPHS), on a CUDA device,
// and not with DLAB_CUDA_GRAPHS=0; a failure before the graph ran falls back to the eager loop with
// one message on stderr, having changed no weight.

#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "core/networks/network.h"

namespace dlab {

struct AdamW;

/// A step's random draws, on the CPU: dataset rows, timesteps, noise, label dropout, flips.
struct StepDraws {
    at::Tensor idx, t, eps, drop, flip;
    at::Tensor noise;  ///< like eps, for data with a spread (LabelledData::x_std); undefined otherwise
};

class TrainStepGraph {
public:
    /// The step's loss (a scalar with autograd) from its draws moved to the device.
    using LossFn = std::function<at::Tensor(const StepDraws& on_device)>;
    /// Whether a training run on `device` may use it: a CUDA-graph build, a CUDA device, and the
    /// environment variable DLAB_CUDA_GRAPHS not "0".
    static bool usable(c10::Device device);

    TrainStepGraph(LossFn loss, Network net, AdamW& opt, std::vector<at::Tensor> ema,
                   double grad_clip, double weight_decay, c10::Device device);
    ~TrainStepGraph();
    TrainStepGraph(const TrainStepGraph&) = delete;
    TrainStepGraph& operator=(const TrainStepGraph&) = delete;

    /// One optimiser step with learning rate `lr`, Adam step count `adam_t` (from 1) and EMA decay
    /// `ema_decay`. Returns the step's loss (a device scalar; read it before the next step), or an
    /// undefined tensor when the graph failed before anything was changed: the caller then takes
    /// this step and every later one eagerly.
    at::Tensor step(const StepDraws& draws, double lr, int64_t adam_t, double ema_decay);
    /// Whether the step has been captured (and is being replayed).
    bool captured() const;
    /// Whether it failed and the caller trains eagerly.
    bool failed() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dlab
