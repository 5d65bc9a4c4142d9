#include "ui/views/explorer_view.h"

#include <algorithm>
#include <cmath>

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QFile>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QSaveFile>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include "core/io/manifest.h"
#include "core/io/model_catalog.h"
#include "ui/common/checked_values.h"
#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/progress_eta.h"
#include "ui/common/qcp.h"
#include "ui/common/sampler_choice.h"

namespace dlab::ui {

namespace {

const char* kKindName[2] = {"classifier-free s", "classifier c"};
const QColor kKindColor[2] = {QColor(31, 119, 180), QColor(214, 39, 40)};
constexpr double kDynamicPercentile = 0.995;  // Imagen's choice

QVector<double> parseScales(const QString& text) {
    QVector<double> out;
    for (const QString& part : text.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
        bool ok = false;
        const double v = part.trimmed().toDouble(&ok);
        if (!ok || !std::isfinite(v) || v < 0 || v > 100) return {};
        out << v;
    }
    return out;
}

}  // namespace

ExplorerView::ExplorerView(SamplingWorker* worker, QWidget* parent) : QWidget(parent), m_worker(worker) {
    auto* controls = new QGroupBox(tr("Guidance sweep"));
    auto* form = new QFormLayout;
    auto* note = new QLabel(tr("Samples the model of the Reverse chain tab at each scale from the same starting "
                               "noise (classes cycling), and scores them against the Fashion-MNIST test set "
                               "with the bundled classifier's features, with the sampler and timesteps below (a model that "
                               "recommends a sampling sets them when it is loaded)."));
    note->setWordWrap(true);
    form->addRow(note);
    m_kind = new QComboBox;
    m_kind->addItem(tr("classifier-free (s)"), 0);
    m_kind->addItem(tr("classifier (c, unconditional path)"), 1);
    form->addRow(tr("Kind"), m_kind);
    m_scales = new QLineEdit(QStringLiteral("0, 1, 2, 3, 5"));
    form->addRow(tr("Scales"), m_scales);
    m_count = new QSpinBox;
    m_count->setRange(20, 10000);
    m_count->setValue(200);
    m_count->setToolTip(tr("Samples per scale (also the number of test and training images for the metrics "
                           "and the floor). FID depends on N: compare only at equal N."));
    form->addRow(tr("Samples N"), m_count);
    m_steps = new QSpinBox;
    m_steps->setRange(1, 1000);
    m_steps->setValue(20);
    form->addRow(tr("Steps"), m_steps);
    m_sampler = makeSamplerBox(QStringLiteral("explorerSampler"));
    form->addRow(tr("Sampler"), m_sampler);
    m_spacing = makeSpacingBox(QStringLiteral("explorerSpacing"));
    form->addRow(tr("Timesteps"), m_spacing);
    m_dynamic = new QCheckBox(tr("Dynamic thresholding (Imagen)"));
    m_dynamic->setToolTip(tr("Clip each predicted x0 at the 99.5th percentile of its |x0| (at least 1) and rescale it, "
                             "instead of clipping at 1: strongly guided samples stop saturating at black and white. "
                             "Compare the 'saturated' column and FID with it off and on at high scales."));
    form->addRow(m_dynamic);
    m_seed = new QSpinBox;
    m_seed->setRange(0, 1000000);
    form->addRow(tr("Seed"), m_seed);
    m_run = new QPushButton(tr("Run sweep"));
    auto* cancelButton = new QPushButton(tr("Cancel"));
    form->addRow(m_run);
    form->addRow(cancelButton);
    m_progress = new QProgressBar;
    form->addRow(m_progress);
    m_floor = new QLabel;
    m_floor->setWordWrap(true);
    m_floor->setStyleSheet(QStringLiteral("color: #555; font-size: 9pt;"));
    form->addRow(m_floor);
    controls->setLayout(form);
    controls->setFixedWidth(290);

    m_byScale = new QCustomPlot;
    m_byScale->xAxis->setLabel(tr("guidance scale"));
    m_byScale->yAxis->setLabel(tr("FID (lower is better)"));
    m_byScale->yAxis2->setVisible(true);
    m_byScale->yAxis2->setLabel(tr("agreement · precision · recall"));
    m_byScale->yAxis2->setRange(0, 1.05);
    m_byScale->legend->setVisible(true);
    m_byScale->legend->setFont(QFont(font().family(), 7));
    // The legend below the plot, four entries a row, so that it covers no data.
    m_byScale->plotLayout()->addElement(1, 0, m_byScale->legend);
    m_byScale->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    m_byScale->legend->setWrap(4);
    m_byScale->plotLayout()->setRowStretchFactor(1, 0.001);
    m_tradeoff = new QCustomPlot;
    m_tradeoff->xAxis->setLabel(tr("diversity (distance within a class)"));
    m_tradeoff->yAxis->setLabel(tr("FID"));
    m_tradeoff->legend->setVisible(true);
    m_tradeoff->legend->setFont(QFont(font().family(), 7));
    m_tradeoff->plotLayout()->addElement(1, 0, m_tradeoff->legend);
    m_tradeoff->plotLayout()->setRowStretchFactor(1, 0.001);
    for (QCustomPlot* p : {m_byScale, m_tradeoff}) {
        p->setMinimumHeight(220);
        p->setInteractions(QCP::iSelectPlottables);
        connect(p, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable* plottable, int index, QMouseEvent*) {
            const QVariant kind = plottable->property("sweepKind");
            if (kind.isValid()) showRow(kind.toInt(), index);
        });
    }
    m_table = new QTableWidget(0, 10);
    m_table->setHorizontalHeaderLabels({tr("kind"), tr("scale"), tr("FID"), tr("IS"), tr("precision"), tr("recall"),
                                        tr("agreement"), tr("diversity"), tr("saturated"), tr("time (s)")});
    m_table->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->setFont(QFont(font().family(), 8));
    m_table->verticalHeader()->setVisible(false);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    connect(m_table, &QTableWidget::cellClicked, this, [this](int row, int) {
        const int kind = m_table->item(row, 0)->data(Qt::UserRole).toInt();
        showRow(kind, m_table->item(row, 1)->data(Qt::UserRole).toInt());
    });
    m_samplesTitle = new QLabel(tr("Click a point or a row to see that scale's samples"));
    m_samples = new ImagePanel(QString());
    explain(m_byScale, tr("Quality and fidelity against the guidance scale"),
            tr("FID = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^½) (left); agreement, precision, recall (right)"),
            tr("FID falls, then rises again once lost variety costs more than fidelity gains; agreement keeps rising."));
    explain(m_tradeoff, tr("The quality-variety trade-off"), tr("x: mean pairwise feature distance within a class; y: FID; one point per scale"),
            tr("Guidance moves left (less variety); the best FID sits where the curve turns."));
    explain(m_samples, tr("Samples of one scale"), tr("the sweep's samples at the clicked scale (same starting noise for every scale)"),
            tr("Click a point or a table row."));

    auto* plots = new QHBoxLayout;
    plots->addWidget(m_byScale, 1);
    plots->addWidget(m_tradeoff, 1);
    auto* bottom = new QHBoxLayout;
    bottom->addWidget(m_table, 3);
    auto* sampleBox = new QVBoxLayout;
    sampleBox->addWidget(m_samplesTitle);
    sampleBox->addWidget(m_samples, 1);
    bottom->addLayout(sampleBox, 2);
    auto* right = new QVBoxLayout;
    right->addLayout(plots, 3);
    right->addLayout(bottom, 2);
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addLayout(right, 1);

    connect(m_run, &QPushButton::clicked, this, &ExplorerView::run);
    connect(cancelButton, &QPushButton::clicked, this, &ExplorerView::cancel);
    connect(m_worker, &SamplingWorker::sweepRow, this, &ExplorerView::onRow);
    connect(m_worker, &SamplingWorker::sweepFinished, this, &ExplorerView::onFinished);
    connect(m_worker, &SamplingWorker::batchProgress, this, [this](int done, int total) {
        if (!m_running) return;
        showProgress(m_progress, done, total, m_clock, tr("steps"));
    });
    replot();
    showMeasured();
}

bool ExplorerView::showMeasured() {
    if (m_running) return false;
    // The measured sweeps of the default model, beside it in the models folder.
    const QString model = QStringLiteral("fashion-mnist-cosine");
    const auto path = resolve_model(model.toStdString());
    if (!path) {
        m_floor->setText(tr("No measured sweeps: the bundled model %1 was not found").arg(model));
        return false;
    }
    QVector<SweepRow> rows[2];
    QString facts[2];
    const char* files[2] = {".sweep-cfg.json", ".sweep-classifier.json"};
    for (int kind = 0; kind < 2; ++kind) {
        QFile f(QString::fromStdString(sibling_path(path.value(), files[kind])));
        // Read like any file from outside: the size first, every value checked before use.
        if (!f.open(QIODevice::ReadOnly) || f.size() > (qint64(1) << 20)) continue;
        const QJsonObject o = QJsonDocument::fromJson(f.readAll()).object();
        for (const QJsonValue& v : o.value(QStringLiteral("rows")).toArray()) {
            const QJsonObject r = v.toObject();
            QStringList problems;
            auto real = [&](const char* key, double hi) {
                return checkedReal(r.value(QLatin1String(key)), QLatin1String(key), 0, hi, 0, &problems);
            };
            SweepRow row;
            row.kind = kind;
            row.scale = real("scale", 100);
            row.fid = real("fid", 1e5);
            row.inceptionScore = real("is", 1e3);
            row.precision = real("precision", 1);
            row.recall = real("recall", 1);
            row.agreement = real("agreement", 1);
            row.diversity = real("diversity", 1e6);
            row.seconds = real("seconds", 1e7);
            // Older measured sweeps have no saturation: shown as "-", never as 0.
            row.saturation = r.contains(QLatin1String("saturation")) ? real("saturation", 1) : std::nan("");
            if (problems.isEmpty() && rows[kind].size() < 100) rows[kind] << row;
        }
        const qint64 n = checkedInt(o.value(QStringLiteral("count")), QString(), 1, 10000000, 0, nullptr);
        const QString device = checkedText(o.value(QStringLiteral("device")), QString(), 40, tr("unknown device"), nullptr);
        const qint64 steps = checkedInt(o.value(QStringLiteral("steps")), QString(), 1, 100000, 0, nullptr);
        if (!rows[kind].isEmpty())
            facts[kind] = tr("%1: N = %2 per scale, DDIM %3, on %4").arg(kind == 0 ? tr("classifier-free") : tr("classifier"))
                              .arg(n).arg(steps).arg(device);
    }
    if (rows[0].isEmpty() && rows[1].isEmpty()) {
        m_floor->setText(tr("No measured sweeps found beside %1").arg(QString::fromStdString(path.value())));
        return false;
    }
    m_rows[0] = rows[0];
    m_rows[1] = rows[1];
    m_showingMeasured = true;
    QStringList f;
    for (const QString& s : facts)
        if (!s.isEmpty()) f << s;
    m_floor->setText(tr("Shown: the measured sweeps of the bundled %1 (%2; docs/eval). Run sweep measures the "
                        "model loaded in the Reverse chain tab and replaces them.").arg(model, f.join(QStringLiteral("; "))));
    m_samplesTitle->setText(tr("Measured sweeps keep their figures, not their samples: run a sweep to see samples"));
    rebuildTable();
    replot();
    return true;
}

void ExplorerView::setModelInfo(const ModelInfo& info) {
    m_modelPath = info.path;
    const bool ok = info.image && !info.classNames.isEmpty();
    m_run->setEnabled(ok);
    m_run->setToolTip(ok ? QString() : tr("Choose a class-conditional image model in the Reverse chain tab"));
    if (!info.classifierGuidance) m_kind->setCurrentIndex(0);
    m_kind->setEnabled(info.classifierGuidance);
    // A model that recommends a sampling (the quality tier) is swept with it.
    selectSampling(m_sampler, m_steps, m_spacing, info.recommendedSampler, info.recommendedSteps, info.recommendedSpacing);
}

void ExplorerView::run() { runWith(m_kind->currentData().toInt(), m_scales->text(), m_count->value(), m_steps->value()); }

void ExplorerView::runWith(int kind, const QString& scalesText, int count, int steps) {
    const QVector<double> scales = parseScales(scalesText);
    if (scales.isEmpty()) {
        m_floor->setText(tr("Scales must be a comma-separated list of numbers in [0, 100]"));
        return;
    }
    m_kind->setCurrentIndex(kind);
    m_scales->setText(scalesText);
    m_count->setValue(count);
    m_steps->setValue(steps);
    if (m_showingMeasured) {  // the measured sweeps are of another model: they go
        m_rows[0].clear();
        m_rows[1].clear();
        m_showingMeasured = false;
        m_samplesTitle->setText(tr("Click a point or a row to see that scale's samples"));
    }
    m_rows[kind].clear();
    m_runningKind = kind;
    m_running = true;
    m_run->setEnabled(false);
    m_progress->setRange(0, int(scales.size()) * steps);
    m_progress->setValue(0);
    m_progress->setFormat(QStringLiteral("%v / %m steps"));
    m_clock.start();
    rebuildTable();
    replot();
    const int id = m_worker->newRequest();
    QMetaObject::invokeMethod(m_worker, "runSweep", Qt::QueuedConnection, Q_ARG(int, kind),
                              Q_ARG(QVector<double>, scales), Q_ARG(int, count), Q_ARG(int, steps),
                              Q_ARG(quint64, quint64(m_seed->value())),
                              Q_ARG(double, m_dynamic->isChecked() ? kDynamicPercentile : 0.0),
                              Q_ARG(int, m_sampler->currentData().toInt()), Q_ARG(int, m_spacing->currentData().toInt()),
                              Q_ARG(int, id));
}

void ExplorerView::setDynamicThresholding(bool on) { m_dynamic->setChecked(on); }

void ExplorerView::setSampling(SamplerKind sampler, TimestepSpacing spacing) {
    m_sampler->setCurrentIndex(std::max(0, m_sampler->findData(int(sampler))));
    m_spacing->setCurrentIndex(std::max(0, m_spacing->findData(int(spacing))));
}

void ExplorerView::cancel() {
    if (!m_running) return;
    m_worker->newRequest();  // the running sweep returns at its next step
    m_worker->requestStop();
}

void ExplorerView::onRow(const SweepRow& row) {
    if (!m_running || row.kind != m_runningKind) return;
    m_rows[row.kind].push_back(row);
    rebuildTable();
    replot();
    showRow(row.kind, int(m_rows[row.kind].size()) - 1);
}

void ExplorerView::onFinished(bool completed, const QString& floor) {
    if (!m_running) return;
    m_running = false;
    m_run->setEnabled(true);
    if (!floor.isEmpty()) m_floor->setText(floor);
    m_progress->setFormat(completed ? tr("done in %1 s").arg(m_clock.elapsed() / 1000.0, 0, 'f', 1) : tr("stopped"));
    record(completed);
    Q_EMIT finished(completed);
}

void ExplorerView::record(bool completed) {
    if (!m_history || m_runningKind < 0 || m_rows[m_runningKind].isEmpty()) return;
    const int kind = m_runningKind;
    const QJsonObject params{{QStringLiteral("model"), m_modelPath}, {QStringLiteral("kind"), kind},
                             {QStringLiteral("scales"), m_scales->text()}, {QStringLiteral("count"), m_count->value()},
                             {QStringLiteral("steps"), m_steps->value()}, {QStringLiteral("seed"), m_seed->value()},
                             {QStringLiteral("dynamic"), m_dynamic->isChecked()}, {QStringLiteral("floor"), m_floor->text()},
                             {QStringLiteral("sampler"), m_sampler->currentText()},
                             {QStringLiteral("spacing"), m_spacing->currentText()}};
    const QString title = tr("%1, %2 sweep %3, N = %4, %5 %6 %7")
                              .arg(QFileInfo(m_modelPath).baseName(), kind == 0 ? tr("classifier-free") : tr("classifier"),
                                   m_scales->text())
                              .arg(m_count->value())
                              .arg(m_sampler->currentText())
                              .arg(m_steps->value())
                              .arg(m_spacing->currentText());
    QString error;
    RunRecord run = m_history->create(QStringLiteral("sweep"), title, params, quint64(m_seed->value()), &error);
    if (run.id.isEmpty()) return;
    QJsonArray rows;
    for (int i = 0; i < m_rows[kind].size(); ++i) {
        const SweepRow& r = m_rows[kind][i];
        const QString png = QStringLiteral("samples-%1.png").arg(i);
        if (r.samples.save(run.folder + QLatin1Char('/') + png)) run.outputs << png;
        rows.append(QJsonObject{{QStringLiteral("kind"), r.kind}, {QStringLiteral("scale"), r.scale},
                                {QStringLiteral("fid"), r.fid}, {QStringLiteral("precision"), r.precision},
                                {QStringLiteral("recall"), r.recall}, {QStringLiteral("is"), r.inceptionScore},
                                {QStringLiteral("agreement"), r.agreement}, {QStringLiteral("diversity"), r.diversity},
                                {QStringLiteral("saturation"), r.saturation}, {QStringLiteral("seconds"), r.seconds},
                                {QStringLiteral("samples"), png}});
    }
    QSaveFile f(run.folder + QStringLiteral("/sweep.json"));
    if (f.open(QIODevice::WriteOnly)) {
        f.write(QJsonDocument(QJsonObject{{QStringLiteral("rows"), rows}}).toJson());
        if (f.commit()) run.outputs.prepend(QStringLiteral("sweep.json"));
    }
    if (m_byScale->savePng(run.folder + QStringLiteral("/sweep.png"), 800, 420)) run.outputs << QStringLiteral("sweep.png");
    run.status = completed ? QStringLiteral("finished") : QStringLiteral("stopped");
    run.message = m_floor->text();
    m_history->save(run, &error);
    Q_EMIT historyChanged();
}

QString ExplorerView::openRecord(const RunRecord& run) {
    QFile f(RunHistory::outputPath(run, QStringLiteral("sweep.json")));
    if (!f.open(QIODevice::ReadOnly)) return tr("The sweep's results (sweep.json) were deleted");
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll());
    if (!doc.isObject()) return tr("%1 is not valid JSON").arg(f.fileName());
    const int kind = std::clamp(run.parameters.value(QStringLiteral("kind")).toInt(), 0, 1);
    if (m_showingMeasured) {
        m_rows[1 - kind].clear();
        m_showingMeasured = false;
    }
    m_rows[kind].clear();
    for (const auto& v : doc.object().value(QStringLiteral("rows")).toArray()) {
        const QJsonObject o = v.toObject();
        SweepRow r;
        r.kind = kind;
        r.scale = o.value(QStringLiteral("scale")).toDouble();
        r.fid = o.value(QStringLiteral("fid")).toDouble();
        r.precision = o.value(QStringLiteral("precision")).toDouble();
        r.recall = o.value(QStringLiteral("recall")).toDouble();
        r.inceptionScore = o.value(QStringLiteral("is")).toDouble();
        r.agreement = o.value(QStringLiteral("agreement")).toDouble();
        r.diversity = o.value(QStringLiteral("diversity")).toDouble();
        r.saturation = o.contains(QStringLiteral("saturation")) ? o.value(QStringLiteral("saturation")).toDouble() : std::nan("");
        r.seconds = o.value(QStringLiteral("seconds")).toDouble();
        r.samples.load(RunHistory::outputPath(run, o.value(QStringLiteral("samples")).toString()));
        m_rows[kind] << r;
    }
    m_floor->setText(run.parameters.value(QStringLiteral("floor")).toString());
    rebuildTable();
    replot();
    showRow(kind, 0);
    return {};
}

void ExplorerView::runRecorded(const QJsonObject& p) {
    m_seed->setValue(p.value(QStringLiteral("seed")).toInt());
    m_dynamic->setChecked(p.value(QStringLiteral("dynamic")).toBool());
    selectRecordedSampling(m_sampler, m_spacing, p);
    runWith(std::clamp(p.value(QStringLiteral("kind")).toInt(), 0, 1), p.value(QStringLiteral("scales")).toString(),
            p.value(QStringLiteral("count")).toInt(200), p.value(QStringLiteral("steps")).toInt(20));
}

void ExplorerView::showRow(int kind, int index) {
    if (kind < 0 || kind > 1 || index < 0 || index >= m_rows[kind].size()) return;
    const SweepRow& r = m_rows[kind][index];
    m_samples->setImage(r.samples);
    m_samplesTitle->setText(tr("%1 = %2: FID %3, agreement %4, diversity %5")
                                .arg(QString::fromLatin1(kKindName[kind]))
                                .arg(r.scale)
                                .arg(r.fid, 0, 'f', 1)
                                .arg(r.agreement, 0, 'f', 3)
                                .arg(r.diversity, 0, 'f', 2));
}

QImage ExplorerView::currentImage() const { return m_samples->image(); }

void ExplorerView::rebuildTable() {
    m_table->setRowCount(0);
    for (int kind = 0; kind < 2; ++kind) {
        for (int i = 0; i < m_rows[kind].size(); ++i) {
            const SweepRow& r = m_rows[kind][i];
            const int row = m_table->rowCount();
            m_table->insertRow(row);
            auto* k = new QTableWidgetItem(kind == 0 ? tr("CFG") : tr("classifier"));
            k->setData(Qt::UserRole, kind);
            k->setForeground(kKindColor[kind]);
            m_table->setItem(row, 0, k);
            auto* sc = new QTableWidgetItem(QString::number(r.scale));
            sc->setData(Qt::UserRole, i);
            m_table->setItem(row, 1, sc);
            const double values[] = {r.fid, r.inceptionScore, r.precision, r.recall, r.agreement, r.diversity, r.saturation, r.seconds};
            const int decimals[] = {2, 3, 3, 3, 3, 2, 3, 1};
            for (int c = 0; c < 8; ++c)
                m_table->setItem(row, c + 2, new QTableWidgetItem(std::isfinite(values[c]) ? QString::number(values[c], 'f', decimals[c])
                                                                                           : QStringLiteral("-")));
        }
    }
}

void ExplorerView::replot() {
    m_byScale->clearPlottables();
    m_tradeoff->clearPlottables();
    double maxFid = 1, maxScale = 1, minDiv = 1e9, maxDiv = 0;
    for (int kind = 0; kind < 2; ++kind) {
        const QVector<SweepRow>& rows = m_rows[kind];
        if (rows.isEmpty()) continue;
        QVector<double> s, fid, agree, prec, rec, div;
        for (const SweepRow& r : rows) {
            s << r.scale;
            fid << r.fid;
            agree << r.agreement;
            prec << r.precision;
            rec << r.recall;
            div << r.diversity;
            maxFid = std::max(maxFid, r.fid);
            maxScale = std::max(maxScale, r.scale);
            minDiv = std::min(minDiv, r.diversity);
            maxDiv = std::max(maxDiv, r.diversity);
        }
        const QString tag = kind == 0 ? tr("CFG") : tr("clf.");
        auto add = [&](QCustomPlot* plot, QCPAxis* valueAxis, const QVector<double>& x, const QVector<double>& y,
                       const QString& name, Qt::PenStyle style, QCPScatterStyle::ScatterShape shape) {
            auto* g = plot->addGraph(plot->xAxis, valueAxis);
            g->setData(x, y, true);
            QPen pen(kKindColor[kind], 2, style);
            g->setPen(pen);
            g->setScatterStyle(QCPScatterStyle(shape, kKindColor[kind], 7));
            g->setName(name);
            g->setProperty("sweepKind", kind);
            return g;
        };
        add(m_byScale, m_byScale->yAxis, s, fid, tag + tr(" FID"), Qt::SolidLine, QCPScatterStyle::ssDisc);
        add(m_byScale, m_byScale->yAxis2, s, agree, tag + tr(" agree"), Qt::DashLine, QCPScatterStyle::ssSquare);
        add(m_byScale, m_byScale->yAxis2, s, prec, tag + tr(" prec."), Qt::DotLine, QCPScatterStyle::ssTriangle);
        add(m_byScale, m_byScale->yAxis2, s, rec, tag + tr(" recall"), Qt::DashDotLine, QCPScatterStyle::ssDiamond);
        // Quality against diversity: a curve through the scales (QCPCurve keeps the scale order).
        auto* curve = new QCPCurve(m_tradeoff->xAxis, m_tradeoff->yAxis);
        QVector<double> order;
        for (int i = 0; i < rows.size(); ++i) order << i;
        curve->setData(order, div, fid);
        curve->setPen(QPen(kKindColor[kind], 2));
        curve->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, kKindColor[kind], 7));
        curve->setName((kind == 0 ? tr("classifier-free") : tr("classifier")) + tr(" (points: scales ") + [&] {
            QStringList l;
            for (double v : s) l << QString::number(v);
            return l.join(QStringLiteral(", "));
        }() + QStringLiteral(")"));
        curve->setProperty("sweepKind", kind);
    }
    m_byScale->xAxis->setRange(-0.2, maxScale * 1.05 + 0.2);
    m_byScale->yAxis->setRange(0, maxFid * 1.1);
    if (maxDiv > 0) m_tradeoff->xAxis->setRange(minDiv - 0.05 * (maxDiv - minDiv) - 0.5, maxDiv + 0.05 * (maxDiv - minDiv) + 0.5);
    m_tradeoff->yAxis->setRange(0, maxFid * 1.1);
    m_byScale->replot();
    m_tradeoff->replot();
}

}  // namespace dlab::ui
