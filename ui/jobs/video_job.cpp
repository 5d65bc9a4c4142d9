#include "ui/jobs/video_job.h"

#include <utility>

#include "core/data/datasets.h"
#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"
#include "core/video/moving_fashion.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

QImage frameStrip(const at::Tensor& frames) {
    const int64_t T = frames.size(0), C = frames.size(1), H = frames.size(2), W = frames.size(3);
    at::Tensor strip = at::ones({C, H, T * (W + 1) - 1}, frames.options().dtype(at::kFloat)).mul_(0.4);  // grey gaps
    for (int64_t f = 0; f < T; ++f) strip.narrow(2, f * (W + 1), W).copy_(frames[f]);
    return tensorToImage(strip.cpu());
}

VideoJob::VideoJob(const VideoRequest& request, int requestId, SamplingWorker* worker)
    : m_request(request), m_requestId(requestId), m_worker(worker) {}

bool VideoJob::start() {
    auto fail = [this](const QString& m) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Video: %1").arg(m));
        return false;
    };
    if (m_request.classIndex < 0 || m_request.classIndex >= kVideoClasses) return fail(SamplingWorker::tr("the class must be 0 to 9"));
    if (m_request.direction < 0 || m_request.direction >= kMotionDirections) return fail(SamplingWorker::tr("the direction must be 0 to 7"));
    if (m_request.steps < 1 || m_request.steps > 1000) return fail(SamplingWorker::tr("1 to 1,000 steps"));
    auto loaded = loadJobModel(m_request.model.toStdString(), m_request.device.toStdString());
    if (!loaded) return fail(QString::fromStdString(loaded.error()));
    m_model = loaded.value();
    if (m_model->config.network.frames < 2 || m_model->config.network.num_classes != kVideoLabels)
        return fail(SamplingWorker::tr("%1 is not a video model of moving Fashion-MNIST").arg(QString::fromStdString(m_model->path)));
    m_frames = m_model->config.network.frames;
    GenerateRequest req;
    req.sampler.steps = m_request.steps;
    req.count = m_frames;
    req.batch = m_frames;  // one clip
    req.guidance = m_request.guidance;
    req.labels = at::full({m_frames}, video_label(m_request.classIndex, m_request.direction), at::kLong);
    req.seed = m_request.seed;
    auto run = GenerateRun::create(*m_model, req);
    if (!run) return fail(QString::fromStdString(run.error()));
    m_run = std::move(run.value());
    m_total = int(m_run->total_steps());
    m_title = SamplingWorker::tr("%1 moving %2 · s = %3")
                  .arg(QString::fromStdString(fashion_mnist_class_names()[size_t(m_request.classIndex)]),
                       QString::fromLatin1(motion_direction_names()[size_t(m_request.direction)]))
                  .arg(m_request.guidance, 0, 'f', 1);
    return true;
}

bool VideoJob::step() {
    if (!m_run || m_run->done()) return false;
    try {
        VideoStep s;
        m_run->step([&](int64_t, int64_t, const StepInfo& info) {
            s.t = int(info.t);
            s.xt = frameStrip(info.x_next.clamp(-1, 1));
            s.x0 = frameStrip(info.x0.clamp(-1, 1));
        });
        s.step = ++m_done;
        s.total = m_total;
        s.frames = int(m_frames);
        s.title = m_title;
        if (m_run->done()) {
            const at::Tensor clip = m_run->result().clamp(-1, 1);  // [T, C, H, W]
            for (int64_t f = 0; f < m_frames; ++f) s.clip.push_back(tensorToImage(clip[f]));
            const at::Tensor c = frame_centroids(clip.unsqueeze(0))[0];  // [T, 2]
            s.rows = toDoubles(c.select(1, 0));
            s.cols = toDoubles(c.select(1, 1));
            s.trackedDirection = int(estimate_motion(clip.unsqueeze(0)).directions[0].item<int64_t>());
        }
        Q_EMIT m_worker->videoStep(s, m_requestId);
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Video failed: %1").arg(QString::fromStdString(error_message(e))));
        return false;
    }
    return !m_run->done();
}

void VideoJob::finish(bool completed) { Q_EMIT m_worker->videoStopped(m_done, m_total, completed, m_requestId); }

}  // namespace dlab::ui
