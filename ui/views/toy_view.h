#pragma once
// The 2-D lab: a toy model's point cloud moving through the reverse chain, a few sample
// trajectories, and the model's denoising direction as a field of arrows at the current t.
// The chain runs as a job of the lab's worker, one step per event; frames arrive as they are
// computed and the view plays the recorded chain when it is complete.

#include <QElapsedTimer>
#include <QPointer>
#include <QTimer>
#include <QVector>
#include <QWidget>

#include "ui/jobs/toy_job.h"

class QComboBox;
class QCustomPlot;
class QLabel;
class QSlider;
class QSpinBox;
class QPushButton;
class QProgressBar;

namespace dlab::ui {

class SamplingWorker;

/// The whole recorded chain.
struct ToyChain {
    QVector<ToyFrame> frames;
    QVector<double> finalX, finalY;
};

class ToyView : public QWidget {
    Q_OBJECT
public:
    explicit ToyView(SamplingWorker* worker, QWidget* parent = nullptr);
    ~ToyView() override;
    int frameCount() const { return m_chain.frames.size(); }

public Q_SLOTS:
    void run();
    /// Stops a running chain within one step (its partial frames are discarded).
    void cancel();
    void showFrame(int index);

Q_SIGNALS:
    void chainReady();

private:
    void drawFrame(const ToyChain& chain, int index);
    QComboBox* m_model = nullptr;
    QComboBox* m_class = nullptr;
    QSpinBox* m_points = nullptr;
    QSpinBox* m_steps = nullptr;
    QSlider* m_scrub = nullptr;
    QLabel* m_label = nullptr;
    QProgressBar* m_progress = nullptr;
    QElapsedTimer m_clock;
    bool m_liveQueued = false;  // a live redraw of the newest frame is scheduled
    QPushButton* m_play = nullptr;
    QCustomPlot* m_plot = nullptr;
    QPointer<SamplingWorker> m_worker;  // owned by the Reverse view's thread, which may end first
    int m_request = 0;        // the worker request of the running chain (0: none)
    QTimer m_player;
    ToyChain m_chain;         // the chain on screen
    ToyChain m_pending;       // the chain being computed
};

}  // namespace dlab::ui
