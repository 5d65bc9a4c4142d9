#pragma once
// The training view: choose data, model size, schedule, prediction, steps, batch and device; start,
// pause, stop and resume; watch the loss (raw and smoothed), learning rate, images/s and ETA, and a
// grid of EMA samples refreshed every N steps. Every run is recorded in the run history; a
// finished or stopped run's model can be opened in the lab views.

#include <QElapsedTimer>
#include <QThread>
#include <QVector>
#include <QWidget>

#include "ui/common/run_history.h"
#include "ui/jobs/training_worker.h"

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QCustomPlot;

namespace dlab::ui {

class ImagePanel;

class TrainingView : public QWidget {
    Q_OBJECT
public:
    /// `history` outlives the view; `cudaAvailable` adds CUDA to the device list.
    TrainingView(RunHistory* history, bool cudaAvailable, QWidget* parent = nullptr);
    ~TrainingView() override;

    bool isRunning() const { return m_running; }
    /// The plot's curves: diffusion: the loss and its smoothing; a GAN: the D and G losses.
    const QVector<double>& plottedLoss(int curve) const { return curve == 0 ? (m_ganPlot ? m_dLoss : m_loss) : (m_ganPlot ? m_loss : m_smooth); }
    /// The line under the controls (what the run is doing, or why it could not start).
    QString statusText() const;
    /// The request the controls describe (run folder not set).
    TrainingRequest request() const;
    /// Sets the controls from a request.
    void setRequest(const TrainingRequest& r);
    TrainingWorker* worker() const { return m_worker; }
    /// The current run's record (empty id when none).
    const RunRecord& currentRun() const { return m_run; }
    QImage samples() const;
    /// Loss values received for the current run (raw).
    const QVector<double>& losses() const { return m_loss; }

public Q_SLOTS:
    /// Starts a new run with the controls' settings.
    void start();
    void togglePause();
    void stop();
    /// Continues the current (stopped) run, or the run of `record` when given.
    void resume();
    void resumeRun(const dlab::ui::RunRecord& record);
    /// Fills the controls from a recorded run and starts a new run with them.
    void rerun(const dlab::ui::RunRecord& record);

Q_SIGNALS:
    /// A run ended with a model file (finished or stopped): it can join the lab's model list.
    void modelTrained(const QString& name, const QString& path);
    /// The user asked to sample the run's model in the lab.
    void openModel(const QString& name, const QString& path);
    void finished(const dlab::ui::TrainingOutcome& outcome);
    void historyChanged();

private:
    void launch(TrainingRequest r);
    void onProgress(const TrainingUpdate& u);
    void onSamples(const QImage& grid, qint64 step);
    void onFinished(const TrainingOutcome& o);
    void setRunning(bool running);
    void replot();
    void setGanPlot(bool gan);
    void loadLossLog(const QString& dir);
    void pushLoss(double step, double loss);

    RunHistory* m_history;
    QThread m_thread;
    TrainingWorker* m_worker = nullptr;
    RunRecord m_run;
    bool m_running = false;

    QComboBox* m_dataset = nullptr;
    QLineEdit* m_folder = nullptr;
    QSpinBox* m_imageSize = nullptr;
    QComboBox* m_channels = nullptr;
    QComboBox* m_size = nullptr;
    QComboBox* m_family = nullptr;  // diffusion or GAN
    QComboBox* m_schedule = nullptr;
    QDoubleSpinBox* m_snrShift = nullptr;
    QComboBox* m_prediction = nullptr;
    QSpinBox* m_steps = nullptr;
    QSpinBox* m_batch = nullptr;
    QDoubleSpinBox* m_lr = nullptr;
    QComboBox* m_device = nullptr;
    QSpinBox* m_seed = nullptr;
    QSpinBox* m_sampleEvery = nullptr;
    QPushButton* m_start = nullptr;
    QPushButton* m_pause = nullptr;
    QPushButton* m_stop = nullptr;
    QPushButton* m_resume = nullptr;
    QPushButton* m_open = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_status = nullptr;
    QLabel* m_stats = nullptr;
    QCustomPlot* m_plot = nullptr;
    ImagePanel* m_samples = nullptr;
    QVector<double> m_steps_, m_loss, m_smooth;
    double m_emaState = 0;  // bias-corrected EMA of the loss (TensorBoard-style smoothing)
    int m_emaCount = 0;
    bool m_ganPlot = false;  // the plot shows a GAN's two losses (linear axis) instead of loss + smoothed
    QVector<double> m_dLoss;
};

}  // namespace dlab::ui
