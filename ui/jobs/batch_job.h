#pragma once
// The Batch view's grid as a job: `perScale` samples of one class for each guidance scale, all
// from the same starting noise, one sampler step per scheduler step; the result is one grid
// image, a row (or block) per scale.

#include <memory>
#include <vector>

#include <QMetaType>
#include <QString>
#include <QVector>

#include "core/sampling/generate.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

struct BatchGridRequest {
    int classIndex = 0;  ///< -1: unconditional
    QVector<double> scales;
    int perScale = 16, steps = 50;
    quint64 seed = 0;
    SamplerKind sampler = SamplerKind::Ddim;              ///< DDPM runs with eta 1, the others with eta 0
    TimestepSpacing spacing = TimestepSpacing::Trailing;  ///< which of the T timesteps the steps visit
    /// SDEdit: every sample starts from this Fashion-MNIST test image (-1: from pure noise) noised to
    /// the sampler's first timestep at or below startT, each column with its own noise (the same in
    /// every row of a strip); classIndex -2 then means the image's own class.
    int startImage = -1;
    int startT = 500;
};

class BatchGridJob : public LabJob {
public:
    BatchGridJob(std::shared_ptr<const LabModel> lab, BatchGridRequest request, SamplingWorker* worker);
    bool start() override;
    bool step() override;
    JobProgress progress() const override { return {m_done, m_total}; }

private:
    bool beginScale();
    void emitGrid();

    std::shared_ptr<const LabModel> m_lab;
    BatchGridRequest m_request;
    SamplingWorker* m_worker;
    std::unique_ptr<GenerateRun> m_run;
    int m_scale = 0;  // index of the scale being sampled
    std::vector<at::Tensor> m_rows;
    int m_done = 0, m_total = 0;
    GenerateRequest m_base;  // every scale's request but its guidance
    int64_t m_startClass = 0, m_startT = -1;  // starting from a test image: its class, the first timestep
    QString m_startClassName;
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::BatchGridRequest)
