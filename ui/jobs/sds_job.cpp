#include "ui/jobs/sds_job.h"

#include <cmath>
#include <utility>

#include "core/runtime/runtime.h"
#include "core/sampling/generate.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

SdsJob::SdsJob(const SdsRequest& request, int requestId, SamplingWorker* worker)
    : m_request(request), m_requestId(requestId), m_worker(worker), m_total(request.steps) {}

bool SdsJob::start() {
    if (m_run) return m_done < m_total;  // continued: the run is already there
    auto fail = [this](const QString& m) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Score distillation: %1").arg(m));
        return false;
    };
    if (m_request.steps < 1 || m_request.steps > 1000000) return fail(SamplingWorker::tr("1 to 1,000,000 steps"));
    auto loaded = loadJobModel(m_request.model.toStdString(), m_request.device.toStdString());
    if (!loaded) return fail(QString::fromStdString(loaded.error()));
    m_model = loaded.value();
    SdsRunConfig c;
    c.label = m_request.label;
    c.three_d = m_request.threeD;
    c.sds.guidance = m_request.guidance;
    c.lr = m_request.lr;
    c.views = m_request.views;
    c.seed = m_request.seed;
    auto run = SdsRun::create(*m_model, c);
    if (!run) return fail(QString::fromStdString(run.error()));
    m_run = std::move(run.value());
    // The comparison: the same class sampled the ordinary way, 2 x 2 (a second on a CPU).
    GenerateRequest req;
    req.sampler.steps = 25;
    req.count = 4;
    req.guidance = 3.0;
    req.labels = at::full({4}, m_request.label, at::kLong);
    req.seed = m_request.seed;
    if (auto a = generate(*m_model, req)) {
        const at::Tensor x = a.value();
        const at::Tensor grid = at::cat({at::cat({x[0], x[1]}, 2), at::cat({x[2], x[3]}, 2)}, 1);  // [C, 2H, 2W]
        m_ancestral = tensorToImage(grid);
    }
    const auto& names = m_model->config.class_names;
    const QString cls = m_request.label < int(names.size()) ? QString::fromStdString(names[size_t(m_request.label)])
                                                            : QString::number(m_request.label);
    m_title = SamplingWorker::tr("%1 · %2 · s = %3").arg(m_request.threeD ? SamplingWorker::tr("3-D scene") : SamplingWorker::tr("image"), cls)
                  .arg(m_request.guidance, 0, 'f', 0);
    return true;
}

void SdsJob::extend(int steps, int requestId) {
    m_total = m_done + std::max(1, steps);
    m_requestId = requestId;
    m_reports = 0;
}

bool SdsJob::step() {
    if (!m_run || m_done >= m_total) return false;
    try {
        const double loss = m_run->step();
        ++m_done;
        if (!std::isfinite(loss)) {
            Q_EMIT m_worker->failed(SamplingWorker::tr("Score distillation: the pseudo-loss became non-finite at step %1; try a lower learning rate").arg(m_done));
            return false;
        }
        // Every step of an image (cheap); every 5th step and the last of a scene (it renders twice).
        if (!m_request.threeD || m_done % 5 == 0 || m_done == m_total) {
            SdsFrame f;
            f.step = m_done;
            f.total = m_total;
            f.loss = loss;
            f.title = m_title;
            f.image = tensorToImage(m_run->image()[0]);
            if (!m_ancestral.isNull()) f.ancestral = std::exchange(m_ancestral, QImage());
            if (m_request.threeD) {
                f.azimuth = std::fmod(15.0 * (m_reports++), 360.0);
                f.turning = tensorToImage(m_run->view(f.azimuth * M_PI / 180.0)[0]);
            }
            Q_EMIT m_worker->sdsFrame(f, m_requestId);
        }
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Score distillation failed: %1").arg(QString::fromStdString(error_message(e))));
        return false;
    }
    return m_done < m_total;
}

void SdsJob::finish(bool completed) { Q_EMIT m_worker->sdsStopped(m_done, m_total, completed, m_requestId); }

}  // namespace dlab::ui
