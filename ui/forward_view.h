#pragma once
// The forward-process view: noise an image with q(x_t | x_0) under two schedules side by side,
// scrub t, and see abar_t of both with the current t marked.

#include <memory>

#include <QWidget>

#include <ATen/core/Tensor.h>

#include "core/autoencoder.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QCPItemStraightLine;
class QLabel;
class QSlider;
class QSpinBox;

namespace dlab::ui {

class ImagePanel;

class ForwardView : public QWidget {
    Q_OBJECT
public:
    explicit ForwardView(QWidget* parent = nullptr);

    /// Uses an image file (any format OpenCV reads) as x_0; returns false with a message shown.
    bool loadImageFile(const QString& path);
    /// Uses test image `index` of a class of Fashion-MNIST as x_0.
    bool loadDatasetSample(int classIndex, int index);
    /// Uses 2000 points of a 2-D toy set ("moons", ...) as x_0, drawn as a point cloud.
    bool loadToySet(const QString& name);
    /// Also noises in the bundled autoencoder's latent space (schedule B) and shows the decoded
    /// result beside pixel-space noise. False (with a message) when the autoencoder is missing.
    bool setLatent(bool on);
    /// The decoded latent-space x_t panel (null image when off).
    QImage latentImage() const;
    void setT(int t);
    int t() const;
    /// x_t under schedule A (0) or B (1) at the current t, as shown.
    QImage noisedImage(int which) const;

protected:
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void recompute();
    at::Tensor m_x0;   // [C,H,W] in [-1, 1], or [N,2] points when m_points
    bool m_points = false;
    at::Tensor m_eps;  // fixed noise, so scrubbing t shows one trajectory
    at::Tensor m_testImages, m_testLabels;
    bool m_latent = false;
    Autoencoder m_autoencoder{nullptr};  // the bundled one, loaded on first use
    at::Tensor m_z0, m_zeps;             // x0's latent and its fixed noise
    QCheckBox* m_latentBox = nullptr;
    ImagePanel* m_latentPanel = nullptr;
    QVector<ImagePanel*> m_stripL;
    QComboBox* m_class = nullptr;
    QComboBox* m_toy = nullptr;
    QSpinBox* m_index = nullptr;
    QComboBox* m_scheduleA = nullptr;
    QComboBox* m_scheduleB = nullptr;
    QSlider* m_t = nullptr;
    QLabel* m_tLabel = nullptr;
    QLabel* m_message = nullptr;
    ImagePanel* m_original = nullptr;
    ImagePanel* m_a = nullptr;
    ImagePanel* m_b = nullptr;
    QVector<ImagePanel*> m_stripA, m_stripB;
    QCustomPlot* m_plot = nullptr;
    QCPItemStraightLine* m_marker = nullptr;
};

}  // namespace dlab::ui
