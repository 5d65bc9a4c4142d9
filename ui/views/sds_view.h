#pragma once
// The Score distillation view (DreamFusion): no chain is sampled; an image, or a 3-D scene of
// voxels rendered from random viewpoints, is optimised so that a frozen class model finds its
// renders likely (the SDS gradient w(t)(eps_hat - eps)). The image updates live, the 3-D scene turns
// while it is optimised, the pseudo-loss is plotted; stop and continue keep the run.

#include <QVector>
#include <QWidget>

#include "ui/jobs/sampling_worker.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace dlab::ui {

class ImagePanel;

class SdsView : public QWidget {
    Q_OBJECT
public:
    SdsView(SamplingWorker* worker, const QString& device, QWidget* parent = nullptr);
    bool running() const { return m_running; }
    /// The reports of the current run.
    const QVector<SdsFrame>& frames() const { return m_frames; }

public Q_SLOTS:
    /// A new run with the controls' settings.
    void start();
    /// More steps of the same run (the steps control's count).
    void continueRun();
    void stop();
    /// Sets the controls as a user would: class, 3-D, guidance, steps.
    void configure(int label, bool threeD, double guidance, int steps);

Q_SIGNALS:
    void finished();
    void statusMessage(const QString& message);

private:
    void onFrame(const SdsFrame& f, int requestId);
    void onStopped(int done, int total, bool completed, int requestId);
    void setRunning(bool running);

    SamplingWorker* m_worker;
    QString m_device;
    QComboBox* m_class = nullptr;
    QCheckBox* m_threeD = nullptr;
    QDoubleSpinBox* m_guidance = nullptr;
    QSpinBox* m_steps = nullptr;
    QDoubleSpinBox* m_lr = nullptr;
    QPushButton* m_start = nullptr;
    QPushButton* m_continue = nullptr;
    QPushButton* m_stop = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_status = nullptr;
    ImagePanel* m_image = nullptr;
    ImagePanel* m_turning = nullptr;
    ImagePanel* m_sample = nullptr;
    QCustomPlot* m_plot = nullptr;
    QVector<SdsFrame> m_frames;
    int m_request = 0;
    bool m_running = false;
};

}  // namespace dlab::ui
