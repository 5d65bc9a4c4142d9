#include "ui/jobs/batch_job.h"

#include <cmath>

#include <QStringList>

#include <ATen/ATen.h>

#include "core/runtime/runtime.h"
#include "imaging/image_io.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

BatchGridJob::BatchGridJob(std::shared_ptr<const LabModel> lab, BatchGridRequest request, SamplingWorker* worker)
    : m_lab(std::move(lab)), m_request(std::move(request)), m_worker(worker) {}

bool BatchGridJob::start() {
    if (!m_lab) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("No model is loaded"));
        return false;
    }
    if (!m_lab->isImage()) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Batch grids need an image model"));
        return false;
    }
    if (m_request.scales.isEmpty()) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Batch: no guidance scale given"));
        return false;
    }
    m_total = int(m_request.scales.size()) * m_request.steps;
    return beginScale();
}

bool BatchGridJob::beginScale() {
    const BatchGridRequest& r = m_request;
    const int64_t C = m_lab->config().network.num_classes;
    GenerateRequest req;
    req.sampler.kind = r.sampler;
    req.sampler.steps = r.steps;
    req.sampler.eta = r.sampler == SamplerKind::Ddpm ? 1.0 : 0.0;
    req.sampler.spacing = r.spacing;
    req.count = r.perScale;
    if (C > 0) req.labels = at::full({r.perScale}, r.classIndex < 0 ? C : r.classIndex, at::kLong);
    req.guidance = r.scales[m_scale];
    req.seed = r.seed;  // the same starting noise for every scale
    req.batch = r.perScale;
    req.graphs = m_lab->graphed;  // this worker thread's graphs: captured once, not per scale
    auto run = GenerateRun::create(*m_lab->model, req);
    if (!run) {
        Q_EMIT m_worker->failed(QString::fromStdString(run.error()));
        return false;
    }
    m_run = std::move(run.value());
    return true;
}

bool BatchGridJob::step() {
    try {
        m_run->step();
        Q_EMIT m_worker->batchProgress(++m_done, m_total);
        if (!m_run->done()) return true;
        m_rows.push_back((m_run->result().clamp(-1, 1) + 1) / 2);
        if (++m_scale < int(m_request.scales.size())) return beginScale();
        emitGrid();
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Batch failed: %1").arg(QString::fromStdString(error_message(e))));
    }
    return false;
}

void BatchGridJob::emitGrid() {
    const QVector<double>& scales = m_request.scales;
    const at::Tensor all = at::cat(m_rows, 0);
    const int64_t cols = scales.size() > 1 ? m_request.perScale : int64_t(std::ceil(std::sqrt(double(m_request.perScale))));
    const at::Tensor grid = imaging::make_grid(all, cols, 2, 1.0);
    QString title;
    if (scales.size() > 1) {
        QStringList sc;
        for (double s : scales) sc << QString::number(s);
        title = SamplingWorker::tr("rows: guidance s = %1 (same seeds in every row)").arg(sc.join(QStringLiteral(", ")));
    } else {
        title = SamplingWorker::tr("%1 samples, guidance s = %2").arg(m_request.perScale).arg(scales.front());
    }
    Q_EMIT m_worker->gridReady(tensorToImage(grid, 0.0, 1.0), title);
}

}  // namespace dlab::ui
