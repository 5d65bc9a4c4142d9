#pragma once
// Batch mode: a grid of samples for one class and guidance scale, or a strip of the same seeds
// across several guidance scales, generated on the lab's worker thread.

#include <QElapsedTimer>
#include <QWidget>

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

public Q_SLOTS:
    /// Fills the class list from the loaded model.
    void setModelInfo(const dlab::ui::ModelInfo& info);
    /// One class, one scale: count samples laid out as a square grid.
    void generateGrid();
    /// The same seeds at every scale of the list: a row per scale.
    void generateStrip();
    void cancel();

Q_SIGNALS:
    void finished();

private:
    void start(const QVector<double>& scales, int perScale);

    SamplingWorker* m_worker;
    QComboBox* m_class = nullptr;
    QLineEdit* m_scales = nullptr;
    QSpinBox* m_count = nullptr;
    QSpinBox* m_steps = nullptr;
    QSpinBox* m_seed = nullptr;
    QPushButton* m_gridButton = nullptr;
    QPushButton* m_stripButton = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_title = nullptr;
    ImagePanel* m_image = nullptr;
    QString m_parameters;
    QElapsedTimer m_clock;
};

}  // namespace dlab::ui
