#pragma once
// The job layer of the lab: one worker object on a QThread owns the loaded model and runs the
// reverse chain step by step. Only value types cross threads (queued signals with QImages and
// plain structs); stop/cancel and the guidance scale are atomics the GUI sets directly, so the GUI
// never waits on the worker. A newer request makes a running loop return at its next step.

#include <atomic>
#include <memory>
#include <vector>

#include <QImage>
#include <QObject>
#include <QVector>
#include <QString>
#include <QStringList>

#include "core/guidance.h"
#include "core/model_io.h"
#include "core/sampler.h"

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

Q_SIGNALS:
    void modelLoaded(const dlab::ui::ModelInfo& info);
    void frameReady(const dlab::ui::ChainFrame& frame);
    /// The loop returned: `done` steps of `total` are recorded; finished when done == total.
    void chainStopped(int done, int total);
    void failed(const QString& message);
    /// A batch grid is ready; `title` describes it, `columns` images per row.
    void gridReady(const QImage& grid, const QString& title);
    /// Progress of a batch job: done of total chain steps.
    void batchProgress(int done, int total);
    void sweepRow(const dlab::ui::SweepRow& row);
    /// The sweep ended (`completed` false when cancelled or failed); `floor` describes the
    /// real-vs-real FID at the same N.
    void sweepFinished(bool completed, const QString& floor);

private:
    void prepare(const ChainSettings& s);
    void loop(int n, int requestId);

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
    std::atomic<bool> m_stop{false};
    std::atomic<int> m_latest{0};
    // Filled by the guidance observers during a step.
    at::Tensor m_outC, m_outU, m_grad;
    ClassifierGradFn m_classifierGrad;  // the bundled noise-aware classifier, when it fits the model
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::ChainSettings)
Q_DECLARE_METATYPE(dlab::ui::ChainFrame)
Q_DECLARE_METATYPE(dlab::ui::ModelInfo)
Q_DECLARE_METATYPE(dlab::ui::SweepRow)
