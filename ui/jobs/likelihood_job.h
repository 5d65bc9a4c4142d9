#pragma once
// The "Loss and likelihood" view's job: the variational bound of a model on Fashion-MNIST test
// images (core/evaluation/likelihood.h), one timestep of one batch per job step, so the view's
// per-timestep curves of L_t and of the noise-prediction loss grow while it runs and a stop lands
// within one step. The model is the lab's loaded one or a bundled model named in the request.

#include <memory>

#include <QMetaType>
#include <QString>
#include <QVector>

#include "core/evaluation/likelihood.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

struct LikelihoodRequest {
    QString model;       ///< a bundled name or a file; empty: the lab's loaded model
    int images = 64;     ///< the first N test images
    int strata = 50;     ///< 0: every timestep (exact)
    int variance = 0;    ///< BoundVariance: 0 model, 1 small, 2 large
    quint64 seed = 0;
};

/// The curves so far (one point per finished timestep) and, once complete, the bound.
struct LikelihoodCurve {
    QString model;                      ///< file base name
    QVector<double> t, term, mse, logSnr;
    int done = 0, total = 0;            ///< job steps
    bool complete = false;              ///< every timestep done: the totals below are set
    bool ended = false;                 ///< the job left the scheduler (complete, stopped or failed)
    double bpd = 0, se = 0, prior = 0, decoder = 0, diffusion = 0;
    int images = 0;
    bool exact = false;
    QString variance, conditioning;
    double seconds = 0;
};

class LikelihoodJob : public LabJob {
public:
    LikelihoodJob(std::shared_ptr<const LabModel> lab, const LikelihoodRequest& request, int requestId, SamplingWorker* worker);
    bool start() override;
    bool step() override;
    void finish(bool completed) override;
    JobProgress progress() const override;

private:
    LikelihoodCurve curve() const;

    std::shared_ptr<const LabModel> m_lab;
    LikelihoodRequest m_request;
    int m_requestId;
    SamplingWorker* m_worker;
    std::shared_ptr<LoadedModel> m_model;  // kept alive for the run
    std::unique_ptr<BoundRun> m_run;
    std::vector<double> m_logSnr;          // per grid timestep
    QString m_name;
    size_t m_reported = 0;                 // timesteps reported so far
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::LikelihoodRequest)
Q_DECLARE_METATYPE(dlab::ui::LikelihoodCurve)
