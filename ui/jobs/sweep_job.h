#pragma once
// The Guidance explorer's sweep as a job: for each scale, `count` samples (classes cycling, the
// same starting noise at every scale), one sampler step per scheduler step; when a scale is done
// its samples are scored against the Fashion-MNIST test set with the bundled classifier's
// features (FID, precision/recall, IS, class agreement, diversity) and sent as a SweepRow.

#include <memory>
#include <optional>

#include <QElapsedTimer>
#include <QImage>
#include <QMetaType>
#include <QString>
#include <QVector>

#include "core/evaluation/feature_net.h"
#include "core/evaluation/metrics.h"
#include "core/sampling/generate.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

/// One guidance scale of a sweep: its metrics (NaN where not available) and samples.
struct SweepRow {
    int kind = 0;              ///< 0 classifier-free (scale s), 1 classifier (scale c, s = 0)
    double scale = 0;
    double fid = 0, precision = 0, recall = 0, inceptionScore = 0, agreement = 0, diversity = 0;
    double saturation = 0;     ///< fraction of pixels at the bounds of [-1, 1]
    double seconds = 0;        ///< sampling time
    QImage samples;            ///< a grid of the first samples
};

struct SweepRequest {
    int kind = 0;  ///< 0 classifier-free, 1 classifier guidance
    QVector<double> scales;
    int count = 500, steps = 50;
    quint64 seed = 0;
    double dynamicThreshold = 0;  ///< Imagen's dynamic thresholding percentile (0: static clipping)
    dlab::SamplerKind sampler = dlab::SamplerKind::Ddim;  ///< DDIM and DPM-Solver++ deterministic, DDPM ancestral
    dlab::TimestepSpacing spacing = dlab::TimestepSpacing::Trailing;
};

class SweepJob : public LabJob {
public:
    SweepJob(std::shared_ptr<const LabModel> lab, SweepRequest request, SamplingWorker* worker);
    /// Loads the classifier and the test set and scores the real images (the floor).
    bool start() override;
    bool step() override;
    /// Emits sweepFinished (completed or not).
    void finish(bool completed) override;
    JobProgress progress() const override { return {m_done, m_total}; }

private:
    bool beginScale();
    void scoreScale();

    std::shared_ptr<const LabModel> m_lab;
    SweepRequest m_request;
    SamplingWorker* m_worker;
    std::unique_ptr<FeatureNet> m_features;
    Features m_real;
    FeatureStats m_realStats;
    double m_floorFid = 0, m_floorSaturation = 0;
    at::Tensor m_target;
    std::unique_ptr<GenerateRun> m_run;
    QElapsedTimer m_clock;
    int m_scale = 0;
    int m_done = 0, m_total = 0;
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::SweepRow)
