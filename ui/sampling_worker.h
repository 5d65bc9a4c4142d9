#pragma once
// The job layer of the lab: one worker object on a QThread owns the loaded model and runs the
// lab's jobs: the reverse chain, the 2-D chain, the forward preview, batch grids and sweeps. Only
// value types cross threads (queued signals with QImages and plain structs); stop/cancel and the
// guidance scale are atomics the GUI sets directly, so the GUI never waits on the worker.
// Chains run one queued event per step, so other jobs interleave between their steps: a forward
// preview lands while a chain plays, and the reverse chain and the 2-D chain run side by side.
// Forward previews are coalesced in a one-slot mailbox (the latest request wins); long batch jobs
// serve the mailbox between their steps. A newer chain request makes a running chain stop at its
// next step.

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <QImage>
#include <QObject>
#include <QVector>
#include <QString>
#include <QStringList>

#include "core/guidance.h"
#include "core/model_io.h"
#include "core/sampler.h"
#include "ui/forward_job.h"
#include "ui/toy_job.h"

namespace dlab::ui {

/// What a chain is run with.
struct ChainSettings {
    int classIndex = 0;       ///< -1: unconditional
    double guidance = 3.0;
    double classifierScale = 0.0;  ///< classifier guidance c (0: off)
    SamplerKind sampler = SamplerKind::Ddim;
    int steps = 50;
    double eta = 0.0;
    quint64 seed = 0;
};

/// One step of the chain as images for the views.
struct ChainFrame {
    int index = 0, total = 0, t = 0;
    double guidance = 1.0;    ///< the scale used at this step
    QImage xt, x0, eps;       ///< the sample entering the step, predicted x0, predicted noise
    bool guided = false;      ///< with guidance: the panels below are set
    QImage x0Cond, x0Uncond, guidanceMap;  ///< conditional / unconditional x0, eps_c - eps_u
    QImage next;              ///< the sample leaving the step (x_0 at the last step)
    double classifierScale = 0.0;  ///< classifier guidance c at this step
    QImage classifierMap;     ///< c * grad log p(y | x_t) as a heat map (classifier guidance on)
    bool latent = false;      ///< a latent model: xt and eps show latent channels, x0/next are decoded
    QImage x0Latent;          ///< the predicted x0 latent's channels
};

/// One guidance scale of a sweep: its metrics (NaN where not available) and samples.
struct SweepRow {
    int kind = 0;              ///< 0 classifier-free (scale s), 1 classifier (scale c, s = 0)
    double scale = 0;
    double fid = 0, precision = 0, recall = 0, inceptionScore = 0, agreement = 0, diversity = 0;
    double seconds = 0;        ///< sampling time
    QImage samples;            ///< a grid of the first samples
};

/// Description of the loaded model.
struct ModelInfo {
    QString path, description;
    QStringList classNames;
    bool image = true;
    bool classifierGuidance = false;  ///< a matching noise-aware classifier is available
    bool latent = false;              ///< latent diffusion (an autoencoder decodes the samples)
};

class SamplingWorker : public QObject {
    Q_OBJECT
public:
    SamplingWorker();
    ~SamplingWorker() override;

    /// Live guidance settings (thread-safe): a change applies at the next step.
    std::shared_ptr<GuidanceControl> guidanceControl() const { return m_guidance; }
    /// Makes a running loop return before its next step (thread-safe).
    void requestStop() { m_stop = true; }
    /// Marks a newer request: a running loop returns at once (thread-safe). Returns its id.
    int newRequest() { return ++m_latest; }
    /// The 2-D chain's own request counter and stop (thread-safe): it never stops the image chain.
    int newToyRequest() { return ++m_latestToy; }
    /// Queues a forward preview (thread-safe). Requests not yet started are replaced: the latest wins.
    void requestForward(const dlab::ui::ForwardRequest& request);
    /// Forward previews computed so far (thread-safe; for tests and benchmarks).
    int forwardServed() const { return m_forwardServed.load(); }

public Q_SLOTS:
    void loadModel(const QString& path, const QString& device);
    /// Starts a new chain from fresh noise and runs `runSteps` steps (-1: to the end).
    void startChain(const dlab::ui::ChainSettings& settings, int runSteps, int requestId);
    /// Continues the current chain by n steps (-1: to the end).
    void runSteps(int n, int requestId);
    /// Generates `perScale` samples of a class for each guidance scale from the same noise and
    /// emits them as one grid image, a row (or block) per scale.
    void generateGrid(int classIndex, const QVector<double>& scales, int perScale, int steps,
                      quint64 seed, int requestId);
    /// A guidance sweep: for each scale, `count` samples (classes cycling, the same starting noise
    /// at every scale) scored against the Fashion-MNIST test set with the bundled classifier's
    /// features; one sweepRow per scale, batchProgress per chain step, then sweepFinished.
    void runSweep(int kind, const QVector<double>& scales, int count, int steps, quint64 seed, int requestId);
    /// Latent models: the autoencoder's decoder applied to `count` latents drawn from N(0, I) (a
    /// one-step VAE generator), emitted as a grid; the title quotes the manifests' FIDs.
    void generateVaeGrid(int count, quint64 seed, int requestId);
    /// Restarts from the recorded x_t of step `index` with new settings (fork from step t).
    void forkFrom(int index, const dlab::ui::ChainSettings& settings, int runSteps, int requestId);
    /// Starts a 2-D chain (toy model) that runs to the end, one toyFrame per step, unless a newer
    /// toy request arrives. It does not disturb the loaded model or the image chain.
    void startToyChain(const dlab::ui::ToyChainRequest& request, int requestId);

Q_SIGNALS:
    void modelLoaded(const dlab::ui::ModelInfo& info);
    void frameReady(const dlab::ui::ChainFrame& frame);
    /// The chain of request `requestId` stopped: `done` steps of `total` are recorded; finished
    /// when done == total.
    void chainStopped(int done, int total, int requestId);
    void failed(const QString& message);
    /// A batch grid is ready; `title` describes it, `columns` images per row.
    void gridReady(const QImage& grid, const QString& title);
    /// Progress of a batch job: done of total chain steps.
    void batchProgress(int done, int total);
    void sweepRow(const dlab::ui::SweepRow& row);
    /// The sweep ended (`completed` false when cancelled or failed); `floor` describes the
    /// real-vs-real FID at the same N.
    void sweepFinished(bool completed, const QString& floor);
    /// A forward preview is ready (the latest request at the time it started).
    void forwardReady(const dlab::ui::ForwardResult& result);
    /// One step of a 2-D chain (the last one carries the final points).
    void toyFrame(const dlab::ui::ToyFrame& frame, int requestId);
    /// A 2-D chain could not start or failed; `requestId` says which.
    void toyFailed(const QString& message, int requestId);

private:
    void prepare(const ChainSettings& s);
    /// Runs n steps (-1: to the end) of the current chain, one queued event per step.
    void loop(int n, int requestId);
    void chainStep(int requestId);
    /// Ends the running chain (if any) and reports where it stopped.
    void endChain();
    void toyStep(int requestId);
    /// Computes the pending forward preview, if any (called from queued events and between the
    /// steps of long jobs).
    void serveForward();
    ModelImageShape modelImageShape() const;

    std::unique_ptr<LoadedModel> m_model;
    std::unique_ptr<NoiseSchedule> m_schedule;
    std::shared_ptr<GuidanceControl> m_guidance;
    std::unique_ptr<Sampler> m_sampler;
    std::unique_ptr<at::Generator> m_gen;
    Denoiser m_denoise;
    ChainSettings m_settings;
    at::Tensor m_x;                  // current sample
    std::vector<at::Tensor> m_record;  // x_t entering each step (CPU)
    int m_index = 0;
    int m_activeChain = 0;   // the request id of the running chain, 0 when none
    int m_remaining = -1;    // steps left to run in it (-1: to the end)
    std::atomic<bool> m_stop{false};
    std::atomic<int> m_latest{0};
    std::atomic<int> m_latestToy{0};
    ToyChainJob m_toy;
    ForwardJob m_forward;
    std::mutex m_forwardMutex;
    std::optional<ForwardRequest> m_forwardPending;  // guarded by m_forwardMutex
    bool m_forwardPosted = false;                     // guarded: a serve event is queued
    std::atomic<int> m_forwardServed{0};
    // Filled by the guidance observers during a step.
    at::Tensor m_outC, m_outU, m_grad;
    ClassifierGradFn m_classifierGrad;  // the bundled noise-aware classifier, when it fits the model
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::ChainSettings)
Q_DECLARE_METATYPE(dlab::ui::ChainFrame)
Q_DECLARE_METATYPE(dlab::ui::ModelInfo)
Q_DECLARE_METATYPE(dlab::ui::SweepRow)
