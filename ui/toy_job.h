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

#include "core/model_io.h"
#include "core/sampler.h"

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

class ToyChainJob {
public:
    static constexpr int kGrid = 15;
    static constexpr double kExtent = 3.2;
    /// Loads the model (kept while the same file is asked for) and draws the starting noise;
    /// an empty string on success, else what is wrong.
    QString start(const ToyChainRequest& request);
    bool active() const { return m_sampler != nullptr && m_index < m_sampler->num_steps(); }
    /// One DDIM step; the frame of the points entering it (and the final points at the last step).
    ToyFrame step();
    void reset() { m_sampler.reset(); }

private:
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
