#pragma once
// The 2-D lab: a toy model's point cloud moving through the reverse chain, a few sample
// trajectories, and the model's denoising direction as a field of arrows at the current t.
// The chain runs as one job on Qt's thread pool; the view then plays the recorded frames.

#include <atomic>
#include <memory>

#include <QElapsedTimer>
#include <QFutureWatcher>
#include <QTimer>
#include <QVector>
#include <QWidget>

class QComboBox;
class QCustomPlot;
class QLabel;
class QSlider;
class QSpinBox;
class QPushButton;

namespace dlab::ui {

/// One recorded step of a toy chain.
struct ToyFrame {
    int t = 0;
    QVector<double> x, y;              ///< the points entering the step
    QVector<double> ax, ay, dx, dy;    ///< arrow grid: positions and directions (x0_hat - x)
};

/// The whole recorded chain (or an error message).
struct ToyChain {
    QVector<ToyFrame> frames;
    QVector<double> finalX, finalY;
    QString error;
    QString model;
};

class ToyView : public QWidget {
    Q_OBJECT
public:
    explicit ToyView(QWidget* parent = nullptr);
    ~ToyView() override;
    int frameCount() const { return m_chain.frames.size(); }

public Q_SLOTS:
    void run();
    /// Stops a running chain job within one step (its partial result is discarded).
    void cancel();
    void showFrame(int index);

Q_SIGNALS:
    void chainReady();

private:
    QComboBox* m_model = nullptr;
    QComboBox* m_class = nullptr;
    QSpinBox* m_points = nullptr;
    QSpinBox* m_steps = nullptr;
    QSlider* m_scrub = nullptr;
    QLabel* m_label = nullptr;
    QPushButton* m_play = nullptr;
    QCustomPlot* m_plot = nullptr;
    QFutureWatcher<ToyChain> m_watcher;
    QTimer m_player;
    ToyChain m_chain;
    std::shared_ptr<std::atomic<bool>> m_cancel = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace dlab::ui
