#pragma once
// Batch mode: a grid of samples for one class and guidance scale, or a strip of the same seeds
// across several guidance scales, generated on the lab's worker thread.

#include <QElapsedTimer>
#include <QJsonObject>
#include <QWidget>

#include "ui/common/run_history.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace dlab::ui {

class ImagePanel;
class SamplingWorker;
struct ModelInfo;

class BatchView : public QWidget {
    Q_OBJECT
public:
    /// Uses the worker (and so the model) of the reverse-chain view.
    explicit BatchView(SamplingWorker* worker, QWidget* parent = nullptr);
    QImage grid() const;
    QString parameters() const { return m_parameters; }
    /// Records every finished batch in `history` (grid.png and its parameters).
    void setHistory(RunHistory* history) { m_history = history; }
    /// The parameters of the last batch started (model, class, scales, per_scale, steps, seed).
    const QJsonObject& lastRequest() const { return m_request; }
    /// SDEdit: samples start from Fashion-MNIST test image `image` (-1: pure noise) noised to t, in
    /// the image's own class.
    void setStartFrom(int image, int t);

public Q_SLOTS:
    /// Fills the class list from the loaded model.
    void setModelInfo(const dlab::ui::ModelInfo& info);
    /// One class, one scale: count samples laid out as a square grid.
    void generateGrid();
    /// The same seeds at every scale of the list: a row per scale.
    void generateStrip();
    void cancel();
    /// Latent models: a grid of one-step VAE samples (the decoder on N(0, I) latents).
    void generateVae();
    /// Runs a recorded batch again (the model must be loaded already).
    void runWith(const QJsonObject& parameters);
    /// Shows a recorded result.
    void showResult(const QImage& grid, const QString& title);

Q_SIGNALS:
    void finished();
    void historyChanged();

private:
    void start(const QVector<double>& scales, int perScale);

    SamplingWorker* m_worker;
    QComboBox* m_class = nullptr;
    QLineEdit* m_scales = nullptr;
    QSpinBox* m_count = nullptr;
    QSpinBox* m_steps = nullptr;
    QComboBox* m_sampler = nullptr;
    QComboBox* m_spacing = nullptr;
    QSpinBox* m_seed = nullptr;
    QSpinBox* m_startImage = nullptr;  // -1: pure noise
    QSpinBox* m_startT = nullptr;
    QPushButton* m_gridButton = nullptr;
    QPushButton* m_stripButton = nullptr;
    QPushButton* m_vaeButton = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_title = nullptr;
    ImagePanel* m_image = nullptr;
    QString m_parameters;
    RunHistory* m_history = nullptr;
    QJsonObject m_request;
    QString m_modelPath;
    bool m_pending = false;
    QElapsedTimer m_clock;
};

}  // namespace dlab::ui
