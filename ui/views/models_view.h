#pragma once
// The "Generative models" view: one big step or many small ones. The same class from the bundled
// GAN (one step), the VAE prior (one step) and the loaded diffusion model with DDIM at a step count
// chosen on a slider (moving it samples again, so quality appears as steps are added); the
// generative trilemma measured by `diffusionlab-cli trilemma` (FID and recall against network
// evaluations; click a point to sample it); and interpolation between two seeds, linear in the
// GAN's z and spherical in diffusion's starting noise.

#include <QTimer>
#include <QVector>
#include <QWidget>

#include "ui/jobs/sampling_worker.h"

class QComboBox;
class QCustomPlot;
class QLabel;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;

namespace dlab::ui {

class ImagePanel;

/// One measured row of the trilemma (resources/models/fashion-mnist-cosine.trilemma.csv).
struct TrilemmaPoint {
    QString generator, sampler;
    int steps = 0, nfe = 0;
    double fid = 0, precision = 0, recall = 0, secondsPer10k = 0;
};

class ModelsView : public QWidget {
    Q_OBJECT
public:
    explicit ModelsView(SamplingWorker* worker, QWidget* parent = nullptr);
    /// The panels' images: 0 GAN, 1 VAE prior, 2 diffusion.
    QImage panelImage(int which) const;
    const QVector<TrilemmaPoint>& trilemma() const { return m_points; }
    int diffusionSteps() const;

public Q_SLOTS:
    void setModelInfo(const dlab::ui::ModelInfo& info);
    /// The three panels for the current class, seed and step count.
    void compare();
    /// GAN and diffusion interpolations between seed A and seed B.
    void interpolate();
    /// Sets the diffusion step count (to the nearest slider stop) and compares again.
    void setDiffusionSteps(int steps);

Q_SIGNALS:
    /// All panels of a request are drawn.
    void finished();

private:
    void start(bool interpolation);
    void loadTrilemma();
    void plotTrilemma();

    SamplingWorker* m_worker;
    QComboBox* m_class = nullptr;
    QSpinBox* m_seed = nullptr;
    QSpinBox* m_seedB = nullptr;
    QSlider* m_steps = nullptr;
    QLabel* m_stepsLabel = nullptr;
    QLabel* m_note = nullptr;
    QProgressBar* m_progress = nullptr;
    ImagePanel* m_panels[3] = {nullptr, nullptr, nullptr};
    QCustomPlot* m_plot = nullptr;
    QVector<TrilemmaPoint> m_points;
    QTimer m_debounce;
    int m_request = 0;
    int m_pending = 0;  // panels still to come in the running request
};

}  // namespace dlab::ui
