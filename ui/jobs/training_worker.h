#pragma once
// Training as a job of the GUI: a worker object on its own QThread runs core's trainer. Only value
// types cross threads (progress values, QImages of EMA samples, the outcome); pause and stop are
// atomics the GUI sets directly, so the GUI never waits on the worker. Training has a thread of
// its own so that the lab views stay usable (sampling other models) while a model trains.

#include <atomic>

#include <QImage>
#include <QJsonObject>
#include <QObject>
#include <QString>

namespace dlab::ui {

/// What a training run is made of. Saved with the run (request.json, the run history) so that a
/// run can be resumed or run again.
struct TrainingRequest {
    QString dataset = QStringLiteral("fashion-mnist");  ///< fashion-mnist, images:DIR or toy:NAME
    int imageSize = 32;        ///< images:DIR: side of the square
    int channels = 1;          ///< images:DIR: 1 or 3
    QString sizePreset = QStringLiteral("small");      ///< tiny, small or large
    QString schedule = QStringLiteral("cosine");
    QString prediction = QStringLiteral("eps");
    qint64 steps = 2000;
    qint64 batch = 64;
    double lr = 2e-4;
    QString device = QStringLiteral("cpu");
    quint64 seed = 0;
    int sampleEvery = 200;     ///< steps between EMA sample grids (0: none)
    int logEvery = 10;         ///< steps between progress reports
    int checkpointEvery = 500;
    QString outDir;            ///< the run folder
    bool resume = false;       ///< continue from outDir/checkpoint.safetensors

    QJsonObject toJson() const;
    static TrainingRequest fromJson(const QJsonObject& o);
};

/// A progress report.
struct TrainingUpdate {
    qint64 step = 0, total = 0;
    double loss = 0, lr = 0, imagesPerS = 0, etaS = 0;
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

Q_DECLARE_METATYPE(dlab::ui::TrainingRequest)
Q_DECLARE_METATYPE(dlab::ui::TrainingUpdate)
Q_DECLARE_METATYPE(dlab::ui::TrainingOutcome)
