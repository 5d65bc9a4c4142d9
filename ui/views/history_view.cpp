#include "ui/views/history_view.h"

#include <QDesktopServices>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonDocument>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <QTableWidget>
#include <QTextBrowser>
#include <QUrl>
#include <QVBoxLayout>

#include "ui/common/explain.h"
#include "ui/common/image_panel.h"

namespace dlab::ui {

HistoryView::HistoryView(RunHistory* history, QWidget* parent) : QWidget(parent), m_history(history) {
    m_table = new QTableWidget(0, 5);
    m_table->setHorizontalHeaderLabels({tr("when"), tr("kind"), tr("run"), tr("status"), tr("seed")});
    m_table->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_table->horizontalHeader()->setSectionResizeMode(2, QHeaderView::Stretch);
    m_table->verticalHeader()->setVisible(false);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_details = new QTextBrowser;
    m_details->setOpenLinks(false);
    m_preview = new ImagePanel(QString());
    explain(m_preview, tr("The run's picture"), tr("its last sample grid, sweep plot or batch"), tr("Open the run to see it in its own tab."));
    m_root = new QLabel(tr("Runs are kept in %1").arg(history->root()));
    m_root->setStyleSheet(QStringLiteral("color: #555; font-size: 9pt;"));
    m_root->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* refreshButton = new QPushButton(tr("Refresh"));
    m_open = new QPushButton(tr("Reopen"));
    m_rerun = new QPushButton(tr("Run again"));
    m_resume = new QPushButton(tr("Resume training"));
    m_folder = new QPushButton(tr("Show folder"));
    m_delete = new QPushButton(tr("Delete…"));
    auto* buttons = new QHBoxLayout;
    for (QPushButton* b : {refreshButton, m_open, m_rerun, m_resume, m_folder, m_delete}) buttons->addWidget(b);
    buttons->addStretch(1);

    auto* side = new QVBoxLayout;
    side->addWidget(m_details, 1);
    side->addWidget(m_preview, 1);
    auto* top = new QHBoxLayout;
    top->addWidget(m_table, 3);
    top->addLayout(side, 2);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(top, 1);
    layout->addLayout(buttons);
    layout->addWidget(m_root);

    connect(refreshButton, &QPushButton::clicked, this, &HistoryView::refresh);
    connect(m_table, &QTableWidget::currentCellChanged, this, [this](int row, int, int, int) { select(row); });
    connect(m_table, &QTableWidget::cellDoubleClicked, this, [this](int, int) {
        if (m_open->isEnabled()) Q_EMIT openRun(current());
    });
    connect(m_open, &QPushButton::clicked, this, [this] { Q_EMIT openRun(current()); });
    connect(m_rerun, &QPushButton::clicked, this, [this] { Q_EMIT rerunRun(current()); });
    connect(m_resume, &QPushButton::clicked, this, [this] { Q_EMIT resumeRun(current()); });
    connect(m_folder, &QPushButton::clicked, this, [this] {
        QDesktopServices::openUrl(QUrl::fromLocalFile(current().folder));
    });
    connect(m_delete, &QPushButton::clicked, this, [this] {
        const RunRecord r = current();
        if (r.id.isEmpty() || r.status == QStringLiteral("running")) return;
        if (QMessageBox::question(this, tr("Delete run"), tr("Delete the run “%1” and its files?").arg(r.title)) != QMessageBox::Yes)
            return;
        QString error;
        if (!m_history->remove(r.id, &error)) QMessageBox::warning(this, tr("Delete failed"), error);
        refresh();
    });
    refresh();
}

RunRecord HistoryView::current() const {
    const int row = m_table->currentRow();
    return row >= 0 && row < m_runs.size() ? m_runs[row] : RunRecord{};
}

QString HistoryView::statusText(int row) const {
    if (row < 0 || row >= m_runs.size()) return {};
    const RunRecord& r = m_runs[row];
    if (r.status == QStringLiteral("unreadable")) return tr("unreadable: %1").arg(r.message);
    const QStringList missing = m_history->missingOutputs(r);
    if (!missing.isEmpty() && missing.size() == r.outputs.size()) return r.status + tr(" · files deleted");
    if (!missing.isEmpty()) return r.status + tr(" · %1 of %2 files deleted").arg(missing.size()).arg(r.outputs.size());
    return r.status;
}

void HistoryView::refresh() {
    const QString selected = current().id;
    m_runs = m_history->list();
    m_table->setRowCount(0);
    int reselect = m_runs.isEmpty() ? -1 : 0;
    for (int i = 0; i < m_runs.size(); ++i) {
        const RunRecord& r = m_runs[i];
        m_table->insertRow(i);
        m_table->setItem(i, 0, new QTableWidgetItem(r.created.isValid() ? r.created.toString(QStringLiteral("yyyy-MM-dd HH:mm")) : QString()));
        m_table->setItem(i, 1, new QTableWidgetItem(r.kind));
        m_table->setItem(i, 2, new QTableWidgetItem(r.title));
        const QString text = statusText(i);
        auto* status = new QTableWidgetItem(text);
        if (text != r.status) status->setForeground(QColor(150, 90, 0));
        m_table->setItem(i, 3, status);
        m_table->setItem(i, 4, new QTableWidgetItem(QString::number(r.seed)));
        if (r.id == selected) reselect = i;
    }
    if (reselect >= 0) m_table->setCurrentCell(reselect, 0);
    else select(-1);
}

void HistoryView::select(int row) {
    const bool valid = row >= 0 && row < m_runs.size();
    const RunRecord r = valid ? m_runs[row] : RunRecord{};
    const QStringList missing = valid ? m_history->missingOutputs(r) : QStringList{};
    const bool readable = valid && r.status != QStringLiteral("unreadable");
    const bool running = r.status == QStringLiteral("running");
    auto has = [&](const QString& f) { return r.outputs.contains(f) && !missing.contains(f); };
    m_open->setEnabled(readable && !running &&
                       (has(QStringLiteral("model.safetensors")) || has(QStringLiteral("grid.png")) || has(QStringLiteral("sweep.json"))));
    m_rerun->setEnabled(readable && !running);
    m_resume->setEnabled(readable && r.kind == QStringLiteral("training") && r.status == QStringLiteral("stopped") &&
                         has(QStringLiteral("checkpoint.safetensors")));
    m_folder->setEnabled(valid && QFileInfo::exists(r.folder));
    m_delete->setEnabled(valid && !running);
    if (!valid) {
        m_details->setHtml(tr("<p>No run selected. Training runs, sample batches and guidance sweeps are recorded here.</p>"));
        m_preview->setImage(QImage());
        return;
    }
    QString html = QStringLiteral("<h3>%1</h3><p>%2 · %3 · seed %4</p>")
                       .arg(r.title.toHtmlEscaped(), r.kind, statusText(row).toHtmlEscaped())
                       .arg(r.seed);
    if (!r.message.isEmpty()) html += QStringLiteral("<p>%1</p>").arg(r.message.toHtmlEscaped());
    html += tr("<p><b>Files</b> (%1)<br>").arg(r.folder.toHtmlEscaped());
    for (const QString& o : r.outputs)
        html += missing.contains(o) ? tr("%1 <span style='color:#b00'>(deleted)</span><br>").arg(o.toHtmlEscaped())
                                    : o.toHtmlEscaped() + QStringLiteral("<br>");
    if (r.outputs.isEmpty()) html += tr("none yet<br>");
    html += tr("</p><p><b>Parameters</b></p><pre>%1</pre>")
                .arg(QString::fromUtf8(QJsonDocument(r.parameters).toJson(QJsonDocument::Indented)).toHtmlEscaped());
    m_details->setHtml(html);
    QImage preview;
    for (const QString& f : {QStringLiteral("samples.png"), QStringLiteral("grid.png"), QStringLiteral("sweep.png")})
        if (has(f) && preview.load(RunHistory::outputPath(r, f))) break;
    m_preview->setImage(preview);
    m_preview->setCaption(preview.isNull() ? (missing.isEmpty() ? tr("no picture") : tr("the picture was deleted")) : QString());
}

}  // namespace dlab::ui
