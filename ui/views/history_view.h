#pragma once
// The run history view: every recorded run (training, sample batch, sweep), newest first, with its
// parameters, seed, outputs (deleted files marked as such) and a preview; reopen, re-run, resume
// (stopped training), show the folder, delete.

#include <QWidget>

#include "ui/common/run_history.h"

class QLabel;
class QPushButton;
class QTableWidget;
class QTextBrowser;

namespace dlab::ui {

class ImagePanel;

class HistoryView : public QWidget {
    Q_OBJECT
public:
    explicit HistoryView(RunHistory* history, QWidget* parent = nullptr);
    /// The runs as listed (newest first).
    const QVector<RunRecord>& runs() const { return m_runs; }
    /// The text shown in the table's status column for row `row` (e.g. "finished", "files deleted").
    QString statusText(int row) const;

public Q_SLOTS:
    void refresh();
    void select(int row);

Q_SIGNALS:
    /// Reopen: a training run's model in the lab; a batch or sweep's result in its view.
    void openRun(const dlab::ui::RunRecord& run);
    void rerunRun(const dlab::ui::RunRecord& run);
    void resumeRun(const dlab::ui::RunRecord& run);

private:
    RunRecord current() const;

    RunHistory* m_history;
    QVector<RunRecord> m_runs;
    QTableWidget* m_table = nullptr;
    QTextBrowser* m_details = nullptr;
    ImagePanel* m_preview = nullptr;
    QLabel* m_root = nullptr;
    QPushButton* m_open = nullptr;
    QPushButton* m_rerun = nullptr;
    QPushButton* m_resume = nullptr;
    QPushButton* m_folder = nullptr;
    QPushButton* m_delete = nullptr;
};

}  // namespace dlab::ui
