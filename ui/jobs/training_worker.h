#pragma once
// Training as a job of the GUI: a worker object on its own QThread runs core's trainer. Only value
// types cross threads (progress values, QImages of EMA samples, the outcome); pause and stop are
// atomics the GUI sets directly, so the GUI never waits on the worker. Training has a thread of
// its own so that the lab views stay usable (sampling other models) while a model trains.

#include <atomic>
#include <cmath>

#include <QImage>
#include <QObject>
#include <QString>

#include "ui/jobs/training_request.h"

namespace dlab::ui {

/// A progress report.
struct TrainingUpdate {
    qint64 step = 0, total = 0;
    double loss = 0, lr = 0, imagesPerS = 0, etaS = 0;
    double dLoss = std::nan("");  ///< a GAN: the discriminator's loss (`loss` is the generator's)
};

/// How a run ended.
struct TrainingOutcome {
    bool ok = false;           ///< false: `message` says why
    bool stopped = false;      ///< stopped by the user (a checkpoint and a model were kept)
    QString message;
    QString outDir, modelPath;
    qint64 stepsDone = 0;
    double seconds = 0, imagesPerS = 0;
};

class TrainingWorker : public QObject {
    Q_OBJECT
public:
    TrainingWorker();
    /// Thread-safe: the loop waits between two steps while paused.
    void setPaused(bool paused) { m_pause = paused; }
    bool paused() const { return m_pause; }
    /// Thread-safe: the run stops before its next step, keeping a checkpoint and a model file.
    void requestStop() { m_stop = true; }

public Q_SLOTS:
    void run(const dlab::ui::TrainingRequest& request);

Q_SIGNALS:
    /// The data is loaded and the network built: a line describing the run.
    void started(const QString& description);
    void progress(const dlab::ui::TrainingUpdate& update);
    /// A grid of samples from the EMA weights at `step` (images), or a scatter of points (2-D).
    void samplesReady(const QImage& grid, qint64 step);
    void finished(const dlab::ui::TrainingOutcome& outcome);

private:
    std::atomic<bool> m_pause{false}, m_stop{false};
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::TrainingUpdate)
Q_DECLARE_METATYPE(dlab::ui::TrainingOutcome)
