#include "ui/jobs/batch_job.h"

#include <cmath>

#include <QStringList>

#include <ATen/ATen.h>

#include "core/data/datasets.h"
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
    // What every scale's request shares: the sampler, the classes, the starting noise.
    const BatchGridRequest& r = m_request;
    const int64_t C = m_lab->config().network.num_classes;
    m_base.sampler.kind = r.sampler;
    m_base.sampler.steps = r.steps;
    m_base.sampler.eta = r.sampler == SamplerKind::Ddpm ? 1.0 : 0.0;
    m_base.sampler.spacing = r.spacing;
    m_base.count = r.perScale;
    m_base.seed = r.seed;  // the same starting noise for every scale
    m_base.batch = r.perScale;
    m_base.graphs = m_lab->graphed;  // this worker thread's graphs: captured once, not per scale
    int64_t cls = r.classIndex < 0 ? C : r.classIndex;
    if (r.startImage >= 0) {
        if (auto st = check_starts_from_fashion_mnist(*m_lab->model); !st) {
            Q_EMIT m_worker->failed(SamplingWorker::tr("Starting from a test image: this model %1").arg(QString::fromStdString(st.error())));
            return false;
        }
        if (r.startT < 0 || r.startT >= m_lab->schedule.timesteps()) {
            Q_EMIT m_worker->failed(SamplingWorker::tr("The starting timestep must be within 0..%1").arg(m_lab->schedule.timesteps() - 1));
            return false;
        }
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!test) {
            Q_EMIT m_worker->failed(SamplingWorker::tr("Starting from a test image: %1").arg(QString::fromStdString(test.error())));
            return false;
        }
        if (r.startImage >= test->x.size(0)) {
            Q_EMIT m_worker->failed(SamplingWorker::tr("There are %1 test images (0..%2)").arg(test->x.size(0)).arg(test->x.size(0) - 1));
            return false;
        }
        m_startClass = test->labels[r.startImage].item<int64_t>();
        if (m_startClass >= 0 && m_startClass < int64_t(test->class_names.size()))
            m_startClassName = QString::fromStdString(test->class_names[size_t(m_startClass)]);
        if (r.classIndex == -2) cls = m_startClass;
        // The same clean image and the same noise per column in every row: encoded and noised once.
        auto started = start_from_image(m_base, *m_lab->model, m_lab->schedule, test->x.narrow(0, r.startImage, 1),
                                        r.perScale, r.seed, r.startT);
        if (!started) {
            Q_EMIT m_worker->failed(SamplingWorker::tr("Starting from a test image: %1").arg(QString::fromStdString(started.error())));
            return false;
        }
        m_startT = started.value();
    } else if (r.classIndex == -2) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("\"The start image's class\" needs a start image"));
        return false;
    }
    if (C > 0) m_base.labels = at::full({r.perScale}, cls, at::kLong);
    m_total = int(r.scales.size()) * int(r.steps - m_base.start_step);
    return beginScale();
}

bool BatchGridJob::beginScale() {
    GenerateRequest req = m_base;
    req.guidance = m_request.scales[m_scale];
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
    const QString start = m_startT >= 0
                              ? SamplingWorker::tr(" · from test image %1 (%2) noised to t = %3")
                                    .arg(m_request.startImage)
                                    .arg(m_startClassName.isEmpty() ? QString::number(m_startClass) : m_startClassName)
                                    .arg(m_startT)
                              : QString();
    if (scales.size() > 1) {
        QStringList sc;
        for (double s : scales) sc << QString::number(s);
        title = SamplingWorker::tr("rows: guidance s = %1 (same seeds in every row)").arg(sc.join(QStringLiteral(", ")));
    } else {
        title = SamplingWorker::tr("%1 samples, guidance s = %2").arg(m_request.perScale).arg(scales.front());
    }
    Q_EMIT m_worker->gridReady(tensorToImage(grid, 0.0, 1.0), title + start);
}

}  // namespace dlab::ui
