#include "ui/jobs/likelihood_job.h"

#include <optional>
#include <utility>

#include <QFileInfo>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/data/datasets.h"
#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

namespace {

// The Fashion-MNIST test split, read once per worker thread.
Result<LabelledData> cachedTestSet() {
    thread_local std::optional<LabelledData> cache;
    if (cache) return *cache;
    auto d = load_fashion_mnist(fashion_mnist_dir(), false);
    if (d) cache = d.value();
    return d;
}

}  // namespace

LikelihoodJob::LikelihoodJob(std::shared_ptr<const LabModel> lab, const LikelihoodRequest& request, int requestId,
                             SamplingWorker* worker)
    : m_lab(std::move(lab)), m_request(request), m_requestId(requestId), m_worker(worker) {}

bool LikelihoodJob::start() {
    auto fail = [this](const QString& m) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Loss and likelihood: %1").arg(m));
        return false;
    };
    if (m_request.images < 2 || m_request.images > 10000 || m_request.strata < 0 || m_request.strata > 100000 ||
        m_request.variance < 0 || m_request.variance > 2)
        return fail(SamplingWorker::tr("2-10000 test images, a timestep count of 0 (all) or more, a known variance"));
    const c10::Device device = m_lab ? m_lab->device : c10::Device(c10::kCPU);
    if (m_request.model.isEmpty()) {
        if (!m_lab) return fail(SamplingWorker::tr("no model is loaded"));
        m_model = m_lab->model;
    } else {
        auto path = resolve_model(m_request.model.toStdString());
        if (!path) return fail(QString::fromStdString(path.error()));
        auto loaded = load_model(path.value(), device);
        if (!loaded) return fail(QString::fromStdString(loaded.error()));
        m_model = std::make_shared<LoadedModel>(std::move(loaded.value()));
    }
    m_name = QFileInfo(QString::fromStdString(m_model->path)).completeBaseName();
    auto test = cachedTestSet();
    if (!test) return fail(QString::fromStdString(test.error()));
    const int64_t n = std::min<int64_t>(m_request.images, test->x.size(0));
    BoundOptions o;
    o.strata = m_request.strata;
    o.variance = BoundVariance(m_request.variance);
    o.seed = m_request.seed;
    o.batch = 256;
    auto run = BoundRun::create(*m_model, test->x.narrow(0, 0, n), test->labels.narrow(0, 0, n), o);
    if (!run) return fail(QString::fromStdString(run.error()));
    m_run = std::move(run.value());
    const NoiseSchedule schedule = NoiseSchedule::create(m_model->config.schedule).value();
    const at::Tensor lsnr = schedule.log_snr().contiguous();
    for (int64_t t : m_run->report().grid.timesteps) m_logSnr.push_back(lsnr.data_ptr<double>()[t]);
    return true;
}

JobProgress LikelihoodJob::progress() const {
    return m_run ? JobProgress{int(m_run->steps_done()), int(m_run->total_steps())} : JobProgress{};
}

LikelihoodCurve LikelihoodJob::curve() const {
    LikelihoodCurve c;
    c.model = m_name;
    if (!m_run) return c;
    const BoundReport r = m_run->report();
    for (size_t k = 0; k < r.term_mean.size(); ++k) {
        c.t << double(r.grid.timesteps[k]);
        c.term << r.term_mean[k];
        c.mse << r.mse_mean[k];
        c.logSnr << m_logSnr[k];
    }
    c.done = int(m_run->steps_done());
    c.total = int(m_run->total_steps());
    c.complete = m_run->done();
    c.bpd = r.bpd;
    c.se = r.bpd_se;
    c.prior = r.prior;
    c.decoder = r.decoder;
    c.diffusion = r.diffusion;
    c.images = int(r.count);
    c.exact = r.grid.exact;
    c.variance = QString::fromStdString(r.variance);
    c.conditioning = QString::fromStdString(r.conditioning);
    c.seconds = r.seconds;
    return c;
}

bool LikelihoodJob::step() {
    if (!m_run || m_run->done()) return false;
    try {
        c10::NoGradGuard ng;
        m_run->step();
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Loss and likelihood: %1").arg(QString::fromStdString(error_message(e))));
        m_run.reset();
        return false;
    }
    // A point per finished timestep (a timestep spans every batch of images).
    const size_t finished = size_t(m_run->timesteps_done());
    if (finished != m_reported || m_run->done()) {
        m_reported = finished;
        Q_EMIT m_worker->likelihoodCurve(curve(), m_requestId);
    }
    return !m_run->done();
}

void LikelihoodJob::finish(bool completed) {
    LikelihoodCurve c = curve();
    c.ended = true;
    c.complete = completed && m_run && m_run->done();
    Q_EMIT m_worker->likelihoodCurve(c, m_requestId);
}

}  // namespace dlab::ui
