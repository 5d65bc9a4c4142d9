#pragma once
// The guidance explorer: a sweep over guidance scales (classifier-free or classifier guidance) runs
// on the lab's worker with progress; its metrics are plotted against the scale and as a
// quality-against-diversity curve, both kinds on the same plots; clicking a point or a table row
// shows that scale's samples.

#include <QElapsedTimer>
#include <QVector>
#include <QWidget>

#include "ui/common/run_history.h"
#include "ui/jobs/sampling_worker.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace dlab::ui {

class ImagePanel;

class ExplorerView : public QWidget {
    Q_OBJECT
public:
    /// Uses the worker (and so the model) of the reverse-chain view.
    explicit ExplorerView(SamplingWorker* worker, QWidget* parent = nullptr);
    /// Rows received so far for a kind (0 classifier-free, 1 classifier).
    const QVector<SweepRow>& rows(int kind) const { return m_rows[kind]; }
    /// The samples panel's image (for export).
    QImage currentImage() const;
    /// Records every finished sweep in `history` (sweep.json, sweep.png, each scale's samples).
    void setHistory(RunHistory* history) { m_history = history; }
    /// Shows a recorded sweep; an error message, or empty on success.
    QString openRecord(const dlab::ui::RunRecord& run);

public Q_SLOTS:
    void run();
    void cancel();
    void setModelInfo(const dlab::ui::ModelInfo& info);
    /// Shows the samples of row `index` of a kind.
    void showRow(int kind, int index);
    /// Starts a sweep with these settings (used by the command line and tests).
    void runWith(int kind, const QString& scales, int count, int steps);
    /// Imagen's dynamic thresholding for the next sweeps (the checkbox).
    void setDynamicThresholding(bool on);
    /// The sampler and timesteps of the next sweeps (the two boxes; a model's recommendation sets
    /// them when it is loaded).
    void setSampling(dlab::SamplerKind sampler, dlab::TimestepSpacing spacing);
    /// Runs a recorded sweep again (the model must be loaded already).
    void runRecorded(const QJsonObject& parameters);
    /// Shows the bundled model's measured sweeps (resources/models/NAME.sweep-cfg.json and
    /// .sweep-classifier.json, from docs/eval) with their N and device, until a sweep is run or
    /// opened. False (and a note) when none is found or readable.
    bool showMeasured();

Q_SIGNALS:
    void finished(bool completed);
    void historyChanged();

private:
    void onRow(const SweepRow& row);
    void onFinished(bool completed, const QString& floor);
    void replot();
    void rebuildTable();
    void record(bool completed);

    SamplingWorker* m_worker;
    QComboBox* m_kind = nullptr;
    QLineEdit* m_scales = nullptr;
    QSpinBox* m_count = nullptr;
    QSpinBox* m_steps = nullptr;
    QComboBox* m_sampler = nullptr;
    QComboBox* m_spacing = nullptr;
    QSpinBox* m_seed = nullptr;
    QCheckBox* m_dynamic = nullptr;
    QPushButton* m_run = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_floor = nullptr;
    QLabel* m_samplesTitle = nullptr;
    QCustomPlot* m_byScale = nullptr;
    QCustomPlot* m_tradeoff = nullptr;
    QTableWidget* m_table = nullptr;
    ImagePanel* m_samples = nullptr;
    QVector<SweepRow> m_rows[2];
    int m_runningKind = -1;
    RunHistory* m_history = nullptr;
    QString m_modelPath;
    bool m_showingMeasured = false;
    bool m_running = false;
    QElapsedTimer m_clock;
};

}  // namespace dlab::ui
