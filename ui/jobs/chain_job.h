#pragma once
// The reverse chain of the Reverse view as a job: one sampler step per scheduler step, each
// emitted as a ChainFrame (x_t, predicted x0 and noise, and with guidance the conditional and
// unconditional x0 and the guidance maps). The chain outlives a run: it can be continued by n
// steps, and forked from any recorded step with new settings.

#include <memory>
#include <optional>
#include <vector>

#include <QImage>
#include <QStringList>
#include <QVector>
#include <QMetaType>

#include <ATen/core/Generator.h>

#include "core/sampling/sampler.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

/// What a chain is run with.
struct ChainSettings {
    int classIndex = 0;       ///< -1: unconditional
    double guidance = 3.0;
    double classifierScale = 0.0;  ///< classifier guidance c (0: off)
    SamplerKind sampler = SamplerKind::Ddim;
    int steps = 50;
    double eta = 0.0;
    TimestepSpacing spacing = TimestepSpacing::Trailing;  ///< which of the T timesteps the sampler visits
    quint64 seed = 0;
    QString prompt;           ///< text-to-image models: what to draw (empty: the null prompt)
    QString negativePrompt;   ///< text-to-image models: guidance pushes away from it (empty: from the null prompt)
    /// >= 0: the chain starts from this Fashion-MNIST test image (a latent model: its latent) noised
    /// by q(x_t | x_0) to the sampler's first timestep at or below realT, and runs from there (what
    /// the model restores from that noise level; the CLI's eval --from-real); -1: from pure noise.
    int realImage = -1;
    int realT = 500;
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
    QStringList tokens;       ///< text models: the prompt's words
    QVector<QImage> tokenMaps;  ///< text models: where the image attends to each word (cross-attention, all layers)
    double stepMs = 0;   ///< the worker's time for the sampler step (network included, device synchronised)
    double frameMs = 0;  ///< the worker's time to turn the step's tensors into this frame's images
};

class ReverseChainJob : public LabJob {
public:
    ReverseChainJob(std::shared_ptr<const LabModel> lab, std::shared_ptr<GuidanceControl> guidance,
                    SamplingWorker* worker);

    /// A new chain from fresh noise (throws with a message when the settings do not fit).
    void begin(const ChainSettings& settings);
    /// Restarts from the recorded x_t of step `index` with new settings; false when that step
    /// was not recorded.
    bool fork(int index, const ChainSettings& settings);
    /// Whether there is a chain to run or continue.
    bool hasChain() const { return m_sampler != nullptr; }
    /// The next run: n steps (-1: to the end) on behalf of request `requestId`.
    void setRun(int n, int requestId) {
        m_remaining = n;
        m_requestId = requestId;
    }

    bool start() override;
    bool step() override;
    /// Emits chainStopped(done, total, request).
    void finish(bool completed) override;
    JobProgress progress() const override;

private:
    void prepare(const ChainSettings& s);
    /// begin() from a test image: x_t of settings.realImage at the sampler's first timestep <= realT.
    void startFromRealImage(const ChainSettings& settings, const std::vector<int64_t>& shape);
    ChainFrame frame(const StepOutput& out, int64_t t, double scale) const;

    std::shared_ptr<const LabModel> m_lab;
    std::shared_ptr<GuidanceControl> m_guidance;
    SamplingWorker* m_worker;
    std::unique_ptr<Sampler> m_sampler;
    std::optional<at::Generator> m_gen;
    Denoiser m_denoise;
    ChainSettings m_settings;
    at::Tensor m_x;                    // current sample
    std::vector<at::Tensor> m_record;  // x_t entering each step (CPU)
    at::Tensor m_testImages;           // the Fashion-MNIST test split, loaded by the first chain from a real image
    int m_index = 0;
    int m_remaining = -1;  // steps left in this run (-1: to the end)
    int m_requestId = 0;
    // Filled by the guidance observers during a step.
    at::Tensor m_outC, m_outU, m_grad;
    // Text models: the prompt's word positions in the token sequence, and the words.
    std::vector<int64_t> m_tokenPositions;
    QStringList m_tokens;
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::ChainSettings)
Q_DECLARE_METATYPE(dlab::ui::ChainFrame)
