#pragma once
// The lab's worker: one object on a QThread that owns the loaded model and schedules the lab's
// jobs (lab_job.h): the reverse chain, the 2-D chain, batch grids, sweeps, VAE samples, and the
// forward preview. Jobs run a step at a time, one queued event per step, taking turns, so a
// forward preview lands while a chain plays and the reverse chain and the 2-D chain run side by
// side. Only value types cross threads (queued signals with QImages and plain structs);
// stop/cancel and the guidance scale are atomics the GUI sets directly, so the GUI never waits.
//
// Rules of the scheduler:
// - Lanes: the image lane (reverse chain, batch grid, sweep, VAE grid: one job at a time, the
//   newest request wins and ends the one before) and the 2-D lane (its own request counter, so a
//   2-D chain never stops the image chain).
// - A job whose request is no longer the latest, or that was stopped, ends before its next step.
// - Forward previews go through a one-slot mailbox (the latest request wins) served before every
//   step of any job.

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include <QImage>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QVector>

#include "ui/jobs/batch_job.h"
#include "ui/jobs/chain_job.h"
#include "ui/jobs/forward_job.h"
#include "ui/jobs/generative_job.h"
#include "ui/jobs/lab_job.h"
#include "ui/jobs/likelihood_job.h"
#include "ui/jobs/sds_job.h"
#include "ui/jobs/video_job.h"
#include "ui/jobs/sweep_job.h"
#include "ui/jobs/toy_job.h"

namespace dlab::ui {

/// Description of the loaded model.
struct ModelInfo {
    QString path, description;
    QStringList classNames;
    bool image = true;
    bool classifierGuidance = false;  ///< a matching noise-aware classifier is available
    bool latent = false;              ///< latent diffusion (an autoencoder decodes the samples)
    bool text = false;                ///< text-to-image: prompts instead of classes
    QStringList vocabulary;           ///< text models: the words the text encoder knows
    int promptWords = 0;              ///< text models: words that fit in a prompt
    /// The sampling the model's manifest recommends ("recommended"); no sampler: none.
    QString recommendedSampler;
    int recommendedSteps = 0;
    double recommendedGuidance = 1.0;
    QString recommendedSpacing;  ///< empty: the sampler's default
    int timesteps = 1000;        ///< T of the model's schedule
};

class SamplingWorker : public QObject {
    Q_OBJECT
public:
    SamplingWorker();
    ~SamplingWorker() override;

    /// Live guidance settings (thread-safe): a change applies at the next step.
    std::shared_ptr<GuidanceControl> guidanceControl() const { return m_guidance; }
    /// Makes the running image-lane job return before its next step (thread-safe).
    void requestStop() { m_stop = true; }
    /// Marks a newer image-lane request: a running job ends at once (thread-safe). Returns its id.
    int newRequest() { return ++m_latest; }
    /// The 2-D chain's own request counter (thread-safe): it never stops the image chain.
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
    /// Restarts from the recorded x_t of step `index` with new settings (fork from step t).
    void forkFrom(int index, const dlab::ui::ChainSettings& settings, int runSteps, int requestId);
    /// Generates `perScale` samples of a class for each guidance scale from the same noise and
    /// emits them as one grid image, a row (or block) per scale (batch_job.h).
    void generateGrid(const dlab::ui::BatchGridRequest& request, int requestId);
    /// A guidance sweep (sweep_job.h): one sweepRow per scale, batchProgress while sampling, then
    /// sweepFinished. dynamicThreshold: Imagen's dynamic thresholding percentile (0: static clipping);
    /// sampler and spacing: int(SamplerKind), int(TimestepSpacing).
    void runSweep(int kind, const QVector<double>& scales, int count, int steps, quint64 seed, double dynamicThreshold,
                  int sampler, int spacing, int requestId);
    /// Latent models: the autoencoder's decoder on latents drawn from N(0, I) (vae_job.h).
    void generateVaeGrid(int count, quint64 seed, int requestId);
    /// GAN, VAE prior and diffusion side by side, or their interpolations (generative_job.h).
    void generateModels(const dlab::ui::GenerativeRequest& request, int requestId);
    /// The variational bound of the loaded or a bundled model on test images (likelihood_job.h):
    /// likelihoodCurve after every finished timestep and once at the end.
    void computeLikelihood(const dlab::ui::LikelihoodRequest& request, int requestId);
    /// Starts a 2-D chain (toy model) that runs to the end, one toyFrame per step, unless a newer
    /// toy request arrives. It does not disturb the loaded model or the image chain.
    void startToyChain(const dlab::ui::ToyChainRequest& request, int requestId);
    /// Score distillation (sds_job.h): a new run of `request.steps` steps, an sdsFrame per report.
    void startSds(const dlab::ui::SdsRequest& request, int requestId);
    /// Continues the last score distillation run by `steps` steps.
    void continueSds(int steps, int requestId);
    /// One clip of a video model (video_job.h), a videoStep per chain step.
    void startVideo(const dlab::ui::VideoRequest& request, int requestId);

Q_SIGNALS:
    void modelLoaded(const dlab::ui::ModelInfo& info);
    void frameReady(const dlab::ui::ChainFrame& frame);
    /// The chain of request `requestId` stopped: `done` steps of `total` are recorded; finished
    /// when done == total.
    void chainStopped(int done, int total, int requestId);
    void failed(const QString& message);
    /// A batch grid is ready; `title` describes it.
    void gridReady(const QImage& grid, const QString& title);
    /// A panel of the generative-models comparison of request `requestId`: 0 GAN, 1 VAE prior, 2 diffusion.
    void generativePanel(int which, const QImage& grid, const QString& caption, int requestId);
    /// Progress of a batch job: done of total chain steps.
    void batchProgress(int done, int total);
    void sweepRow(const dlab::ui::SweepRow& row);
    /// The sweep ended (`completed` false when cancelled or failed); `floor` describes the
    /// real-vs-real FID at the same N.
    void sweepFinished(bool completed, const QString& floor);
    /// A forward preview is ready (the latest request at the time it started).
    void forwardReady(const dlab::ui::ForwardResult& result);
    /// The growing per-timestep curves of a likelihood request (ended once it left the worker).
    void likelihoodCurve(const dlab::ui::LikelihoodCurve& curve, int requestId);
    /// One step of a 2-D chain (the last one carries the final points).
    void toyFrame(const dlab::ui::ToyFrame& frame, int requestId);
    /// A 2-D chain could not start or failed; `requestId` says which.
    void toyFailed(const QString& message, int requestId);
    /// A report of a score distillation run, and its end (done of total steps).
    void sdsFrame(const dlab::ui::SdsFrame& frame, int requestId);
    void sdsStopped(int done, int total, bool completed, int requestId);
    /// A step of a video clip's chain, and the chain's end (done of total steps).
    void videoStep(const dlab::ui::VideoStep& step, int requestId);
    void videoStopped(int done, int total, bool completed, int requestId);

private:
    enum Lane { ImageLane = 0, ToyLane = 1, kLanes = 2 };
    struct Slot {
        std::shared_ptr<LabJob> job;
        std::function<bool()> stale;  ///< true when the job's request was stopped or superseded
    };
    /// Ends the lane's job (if any) and starts `job` there; it then runs a step per event.
    void schedule(Lane lane, std::shared_ptr<LabJob> job, std::function<bool()> stale);
    /// Takes a job out of its lane and lets it report its end.
    void end(Lane lane, bool completed);
    /// One scheduler event: the pending forward preview, then one step of the next job in turn.
    void pump();
    void postPump();
    /// Schedules the current chain for n steps (-1: to the end) on behalf of `requestId`.
    void runChain(int n, int requestId);
    /// An image-lane job of request `requestId`: stale once stopped or superseded.
    std::function<bool()> imageStale(int requestId);
    /// Computes the pending forward preview, if any.
    void serveForward();
    ModelImageShape modelImageShape() const;

    std::shared_ptr<const LabModel> m_lab;
    std::shared_ptr<GuidanceControl> m_guidance;
    std::shared_ptr<ReverseChainJob> m_chain;  // the current chain, kept to continue or fork it
    std::shared_ptr<ToyChainJob> m_toy;        // kept between requests (it caches its model)
    std::shared_ptr<SdsJob> m_sds;             // the last score distillation run, kept to continue it
    std::array<Slot, kLanes> m_lanes;
    int m_turn = 0;             // the lane whose job steps next
    bool m_pumpPosted = false;  // a pump event is queued
    std::atomic<bool> m_stop{false};
    std::atomic<int> m_latest{0};
    std::atomic<int> m_latestToy{0};
    ForwardJob m_forward;
    std::mutex m_forwardMutex;
    std::optional<ForwardRequest> m_forwardPending;  // guarded by m_forwardMutex
    bool m_forwardPosted = false;                     // guarded: a serve event is queued
    std::atomic<int> m_forwardServed{0};
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::ModelInfo)
