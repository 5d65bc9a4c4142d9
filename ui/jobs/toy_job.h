#pragma once
// The 2-D lab's reverse chain as a job of the lab's worker, one step at a time: a toy model's
// point cloud moves through the chain and a grid of arrows shows the model's denoising direction.

#include <memory>
#include <optional>

#include <QMetaType>
#include <QString>
#include <QVector>

#include <ATen/core/Tensor.h>
#include <ATen/core/Generator.h>

#include "core/io/model_io.h"
#include "core/sampling/sampler.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

/// One recorded step of a toy chain.
struct ToyFrame {
    int index = 0, total = 0, t = 0;
    QVector<double> x, y;              ///< the points entering the step
    QVector<double> ax, ay, dx, dy;    ///< arrow grid: positions and directions (x0_hat - x)
    bool last = false;                 ///< the chain ends with this step: finalX/finalY are set
    QVector<double> finalX, finalY;    ///< the samples leaving the last step
};

struct ToyChainRequest {
    QString model;          ///< a 2-D model file
    int classIndex = -1;    ///< -1: unconditional
    int points = 2000, steps = 50;
    quint64 seed = 1;
};

/// The job keeps its toy model between requests (one per file asked for); each request restarts
/// it with setRequest() and runs to the end unless a newer toy request arrives.
class ToyChainJob : public LabJob {
public:
    static constexpr int kGrid = 15;
    static constexpr double kExtent = 3.2;
    explicit ToyChainJob(SamplingWorker* worker) : m_worker(worker) {}
    void setRequest(const ToyChainRequest& request, int requestId) {
        m_request = request;
        m_requestId = requestId;
    }
    /// Loads the model (kept while the same file is asked for) and draws the starting noise;
    /// emits toyFailed when it cannot.
    bool start() override;
    /// One DDIM step: emits the frame of the points entering it (and the final points at the
    /// last step).
    bool step() override;
    JobProgress progress() const override {
        return {m_index, m_sampler ? int(m_sampler->num_steps()) : 0};
    }

private:
    QString load(const ToyChainRequest& request);
    ToyFrame nextFrame();

    SamplingWorker* m_worker;
    ToyChainRequest m_request;
    int m_requestId = 0;
    QString m_modelPath;
    std::optional<LoadedModel> m_model;
    std::optional<NoiseSchedule> m_schedule;
    std::unique_ptr<Sampler> m_sampler;
    Denoiser m_denoise, m_gridDenoise;
    std::optional<at::Generator> m_gen;
    at::Tensor m_x, m_grid;
    int m_index = 0;
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::ToyFrame)
Q_DECLARE_METATYPE(dlab::ui::ToyChainRequest)
