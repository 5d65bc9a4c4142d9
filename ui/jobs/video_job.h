#pragma once
// The Video view's job: one clip of a video model (core/video, `diffusionlab-cli video`) sampled a
// step at a time. Every step reports the clip's T frames as x_t and as the predicted x_0 (strips of
// frames side by side); the last report carries the finished frames and the item's tracked path.

#include <memory>

#include <QImage>
#include <QMetaType>
#include <QString>
#include <QVector>

#include "core/sampling/generate.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

struct VideoRequest {
    QString model = QStringLiteral("fashion-mnist-video");  ///< a bundled video model or a file
    int classIndex = 0;   ///< Fashion-MNIST class 0-9
    int direction = 0;    ///< 0-7: east, north-east, north, ... (core/video/moving_fashion.h)
    double guidance = 3.0;
    int steps = 25;       ///< DDIM steps
    quint64 seed = 0;
    QString device = QStringLiteral("cpu");
};

/// One step of the clip's chain.
struct VideoStep {
    int step = 0, total = 0;  ///< steps done (1-based) and in all
    int t = 0;                ///< the timestep the step started from
    QImage xt, x0;            ///< the T frames side by side: the sample leaving the step, the predicted x_0
    int frames = 0;           ///< T
    QString title;            ///< class and direction
    // The last step only:
    QVector<QImage> clip;     ///< the finished frames
    QVector<double> rows, cols;  ///< the tracked centroid of every frame (pixels)
    int trackedDirection = -1;   ///< the tracker's direction (frames 0 -> 4) of the finished clip
};

class VideoJob : public LabJob {
public:
    VideoJob(const VideoRequest& request, int requestId, SamplingWorker* worker);
    bool start() override;
    bool step() override;
    void finish(bool completed) override;
    JobProgress progress() const override { return {m_done, m_total}; }

private:
    VideoRequest m_request;
    int m_requestId;
    SamplingWorker* m_worker;
    std::shared_ptr<LoadedModel> m_model;
    std::unique_ptr<GenerateRun> m_run;
    int m_done = 0, m_total = 0;
    int64_t m_frames = 0;
    QString m_title;
};

/// The T frames [T, C, H, W] (model space [-1, 1]) side by side with a 1-pixel gap.
QImage frameStrip(const at::Tensor& frames);

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::VideoRequest)
Q_DECLARE_METATYPE(dlab::ui::VideoStep)
