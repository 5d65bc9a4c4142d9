#pragma once
// The Score distillation view's job: an SDS run (core/distillation/sds_run.h) on a bundled class
// model, one optimiser step per job step, reporting the image (or the 3-D scene from the front and
// from a turning camera) and the pseudo-loss. The run outlives a stop: "continue" adds steps.

#include <memory>

#include <QImage>
#include <QMetaType>
#include <QString>

#include "core/distillation/sds_run.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

struct SdsRequest {
    QString model = QStringLiteral("default");  ///< a bundled class model or a file
    int label = 0;
    bool threeD = false;
    double guidance = 100.0;
    double lr = 0.03;
    int views = 4;      ///< 3-D: azimuths per step
    int steps = 500;    ///< this run's steps (a continue adds as many again)
    quint64 seed = 0;
    QString device = QStringLiteral("cpu");
};

/// One report of the run.
struct SdsFrame {
    int step = 0, total = 0;
    double loss = 0;     ///< the step's pseudo-loss w(t) ||eps_hat - eps||^2
    QImage image;        ///< the image, or the scene from azimuth 0
    QImage turning;      ///< 3-D: the scene from a camera turning 15 degrees per report
    double azimuth = 0;  ///< of `turning`, degrees
    QString title;       ///< what is being distilled
    QImage ancestral;    ///< 4 samples of the class the ordinary way (DDIM 25, s = 3), in the first report of a run
};

class SdsJob : public LabJob {
public:
    SdsJob(const SdsRequest& request, int requestId, SamplingWorker* worker);
    bool start() override;
    bool step() override;
    void finish(bool completed) override;
    JobProgress progress() const override { return {m_done, m_total}; }
    /// Continue the same run for `steps` more steps on behalf of `requestId`.
    void extend(int steps, int requestId);

private:
    SdsRequest m_request;
    int m_requestId;
    SamplingWorker* m_worker;
    std::shared_ptr<LoadedModel> m_model;
    std::unique_ptr<SdsRun> m_run;
    int m_done = 0, m_total = 0, m_reports = 0;
    QString m_title;
    QImage m_ancestral;  // sent with the first report
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::SdsRequest)
Q_DECLARE_METATYPE(dlab::ui::SdsFrame)
