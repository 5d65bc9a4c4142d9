#pragma once
// The Video view: a clip of the video diffusion model (a space-time factorised UNet, core/video)
// asked for a class and a direction of motion. The reverse chain is shown as a grid of frames
// (columns) by steps (rows), the predicted x_0 of the latest step under it, the finished clip
// playing in a loop beside it, and the item's tracked path against the asked direction in the plot.
// The clip can be exported as MP4.

#include <QImage>
#include <QVector>
#include <QWidget>

#include "ui/jobs/sampling_worker.h"

class QComboBox;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTimer;

namespace dlab::ui {

class ImagePanel;

class VideoView : public QWidget {
    Q_OBJECT
public:
    VideoView(SamplingWorker* worker, const QString& device, QWidget* parent = nullptr);
    bool running() const { return m_running; }
    /// The reported steps of the current clip, and its finished frames (empty until done).
    const QVector<VideoStep>& steps() const { return m_steps; }
    const QVector<QImage>& clip() const;
    /// The grid shown: rows of steps, columns of frames.
    QImage chainGrid() const { return m_grid; }
    /// Writes the finished clip as an MP4 (8 frames/s, 8x nearest-neighbour); the error, or empty.
    QString exportClip(const QString& path) const;

public Q_SLOTS:
    void start();
    void stop();
    /// Sets the controls as a user would.
    void configure(int classIndex, int direction, double guidance, int steps);

Q_SIGNALS:
    void finished();
    void statusMessage(const QString& message);

private:
    void onStep(const VideoStep& s, int requestId);
    void onStopped(int done, int total, bool completed, int requestId);
    void setRunning(bool running);
    void rebuildGrid();
    void plotPath(const VideoStep& s);
    void exportDialog();

    SamplingWorker* m_worker;
    QString m_device;
    QComboBox* m_class = nullptr;
    QComboBox* m_direction = nullptr;
    QDoubleSpinBox* m_guidance = nullptr;
    QSpinBox* m_stepCount = nullptr;
    QSpinBox* m_seed = nullptr;
    QPushButton* m_start = nullptr;
    QPushButton* m_stop = nullptr;
    QPushButton* m_export = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_status = nullptr;
    ImagePanel* m_chain = nullptr;
    ImagePanel* m_x0 = nullptr;
    ImagePanel* m_player = nullptr;
    QCustomPlot* m_plot = nullptr;
    QTimer* m_timer = nullptr;
    QVector<VideoStep> m_steps;
    QImage m_grid;
    int m_playing = 0;  // the frame the loop shows
    int m_request = 0;
    bool m_running = false;
};

}  // namespace dlab::ui
