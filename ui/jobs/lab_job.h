#pragma once
// The lab's job interface. Every piece of work the lab's worker does for a view -- the reverse
// chain, the 2-D chain, a batch grid, a guidance sweep, VAE samples -- is a LabJob that the
// worker's scheduler starts once and then steps one small unit at a time (one chain step), so
// that jobs interleave and a stop or a newer request lands within one step. A job lives on the
// worker thread; it reports through the worker's signals (value types only) and holds what it
// needs (the loaded model) by shared pointer, so nothing it uses can go away under it.
// A new model family adds a job file and a view, not a branch in the worker.

#include <atomic>
#include <memory>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "core/forward/schedule.h"
#include "core/guidance/guidance.h"
#include "core/io/model_io.h"
#include "core/networks/graphed_model.h"

namespace dlab::ui {

class SamplingWorker;

/// Loads a bundled model (or a model file) on a device named as the views name it ("cpu",
/// "cuda", ...) for a job of its own (score distillation, video); the message says what failed.
Result<std::shared_ptr<LoadedModel>> loadJobModel(const std::string& model, const std::string& device);

/// The model the lab has loaded, shared read-only by the jobs that use it.
struct LabModel {
    std::shared_ptr<LoadedModel> model;
    NoiseSchedule schedule;
    c10::Device device = c10::kCPU;
    ClassifierGradFn classifierGrad;  ///< the bundled noise-aware classifier, when it fits the model
    /// The network's forward pass as CUDA graphs (on CUDA; captured per shape on first use).
    std::shared_ptr<GraphedModel> graphed;
    const ModelConfig& config() const { return model->config; }
    bool isImage() const { return model->config.network.kind == NetworkKind::UNet; }
};

/// How far a job is, in its own units (chain steps).
struct JobProgress {
    int done = 0, total = 0;
};

class LabJob {
public:
    virtual ~LabJob() = default;
    /// Prepares the job on the worker thread before its first step. Returns false when it cannot
    /// run; it has then reported why through the worker's signals.
    virtual bool start() = 0;
    /// One unit of work. Returns true while there is more to do.
    virtual bool step() = 0;
    /// The job left the scheduler: `completed` after its last step, false when it was cancelled,
    /// replaced by a newer request or failed. Jobs report their end here (chainStopped, ...).
    virtual void finish(bool completed) {}
    virtual JobProgress progress() const = 0;

    /// Asks the job to stop before its next step (thread-safe).
    void cancel() { m_cancel.store(true); }
    bool isCancelled() const { return m_cancel.load(); }
    /// Clears a cancel before the job is scheduled again (a chain continued after a stop).
    void resetCancel() { m_cancel.store(false); }

private:
    std::atomic<bool> m_cancel{false};
};

}  // namespace dlab::ui
