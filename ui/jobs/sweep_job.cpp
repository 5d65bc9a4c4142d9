#include "ui/jobs/sweep_job.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/data/datasets.h"
#include "core/evaluation/classifier.h"
#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"
#include "imaging/image_io.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

SweepJob::SweepJob(std::shared_ptr<const LabModel> lab, SweepRequest request, SamplingWorker* worker)
    : m_lab(std::move(lab)), m_request(std::move(request)), m_worker(worker) {}

bool SweepJob::start() {
    if (!m_lab || !m_lab->isImage() || m_lab->config().network.num_classes == 0) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("The guidance explorer needs a class-conditional image model"));
        return false;
    }
    if (m_request.kind == 1 && !m_lab->classifierGrad) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Classifier guidance needs a noise-aware classifier for this model's images"));
        return false;
    }
    if (m_request.scales.isEmpty() || m_request.count < 1 || m_request.steps < 1) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("A sweep needs at least one scale, one sample and one step"));
        return false;
    }
    try {
        auto cpath = resolve_model("fashion-mnist-classifier");
        if (!cpath) throw std::runtime_error(cpath.error());
        auto clf = load_classifier(cpath.value(), m_lab->device);
        if (!clf) throw std::runtime_error(clf.error());
        m_features = classifier_feature_net(clf.value(), m_lab->device, "Fashion-MNIST classifier");
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!test) throw std::runtime_error(test.error());
        auto train = load_fashion_mnist(fashion_mnist_dir(), true);
        if (!train) throw std::runtime_error(train.error());
        const int64_t N = m_request.count;
        m_real = m_features->extract(test->x.narrow(0, 0, std::min<int64_t>(N, test->x.size(0))));
        m_realStats = feature_stats(m_real.pooled);
        m_floorFid = frechet_distance(
            feature_stats(m_features->extract(train->x.narrow(0, 0, std::min<int64_t>(N, train->x.size(0)))).pooled),
            m_realStats);
        m_floorSaturation = saturated_fraction(train->x.narrow(0, 0, std::min<int64_t>(N, train->x.size(0))));
        m_target = at::arange(N, at::kLong).remainder(m_lab->config().network.num_classes);
        if (!beginScale()) return false;
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Sweep failed: %1").arg(QString::fromStdString(error_message(e))));
        return false;
    }
    m_total = int(m_request.scales.size()) * int(m_run->total_steps());
    return true;
}

bool SweepJob::beginScale() {
    const double s = m_request.scales[m_scale];
    GenerateRequest req;
    req.sampler.kind = m_request.sampler;
    req.sampler.eta = m_request.sampler == SamplerKind::Ddpm ? 1.0 : 0.0;
    req.sampler.spacing = m_request.spacing;
    req.sampler.steps = m_request.steps;
    req.sampler.dynamic_threshold = m_request.dynamicThreshold;
    req.labels = m_target;
    req.count = m_request.count;
    req.seed = m_request.seed;  // the same starting noise at every scale
    req.batch = 250;
    req.graphs = m_lab->graphed;  // this worker thread's graphs: captured once, not per scale
    req.guidance = m_request.kind == 0 ? s : 0.0;
    if (m_request.kind == 1) {
        req.classifier_grad = m_lab->classifierGrad;
        req.classifier_scale = s;
        req.classifier_labels = m_target;
    }
    auto run = GenerateRun::create(*m_lab->model, req);
    if (!run) {
        Q_EMIT m_worker->failed(QString::fromStdString(run.error()));
        return false;
    }
    m_run = std::move(run.value());
    m_clock.start();
    return true;
}

bool SweepJob::step() {
    try {
        m_run->step();
        ++m_done;
        if (m_done == m_total || m_done % 5 == 0) Q_EMIT m_worker->batchProgress(m_done, m_total);
        if (!m_run->done()) return true;
        scoreScale();
        if (++m_scale < int(m_request.scales.size())) return beginScale();
        return false;
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Sweep failed: %1").arg(QString::fromStdString(error_message(e))));
        m_scale = -1;  // failed: finish() reports an incomplete sweep
        return false;
    }
}

void SweepJob::scoreScale() {
    const at::Tensor x = m_run->result();
    const int64_t N = m_request.count, C = m_lab->config().network.num_classes;
    SweepRow row;
    row.kind = m_request.kind;
    row.scale = m_request.scales[m_scale];
    row.seconds = m_clock.elapsed() / 1000.0;
    const Features fake = m_features->extract(x.clamp(-1, 1));
    row.fid = frechet_distance(feature_stats(fake.pooled), m_realStats);
    const auto pr = precision_recall(m_real.pooled, fake.pooled, 3);
    row.precision = pr.precision;
    row.recall = pr.recall;
    row.inceptionScore = inception_score(fake.logits, 10).mean;
    row.agreement = class_agreement(fake.logits, m_target);
    row.diversity = mean_pairwise_distance(fake.pooled, m_target);
    row.saturation = saturated_fraction(x);
    const int64_t shown = std::min<int64_t>(N, 40);
    row.samples = tensorToImage(
        imaging::make_grid((x.narrow(0, 0, shown).clamp(-1, 1) + 1) / 2, std::min<int64_t>(C, 10), 2, 1.0), 0.0, 1.0);
    Q_EMIT m_worker->sweepRow(row);
}

void SweepJob::finish(bool completed) {
    if (completed && m_scale == int(m_request.scales.size())) {
        Q_EMIT m_worker->sweepFinished(
            true, SamplingWorker::tr("real-vs-real floor: FID %1 (training vs test images, N = %2); "
                                     "%3 of real pixels at the bounds")
                      .arg(m_floorFid, 0, 'f', 2)
                      .arg(m_request.count)
                      .arg(m_floorSaturation, 0, 'f', 3));
    } else {
        Q_EMIT m_worker->sweepFinished(false, QString());
    }
}

}  // namespace dlab::ui
