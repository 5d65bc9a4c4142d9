#include "ui/views/likelihood_view.h"

#include <algorithm>
#include <cmath>

#include <QCheckBox>
#include <QComboBox>
#include <QFile>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QJsonValue>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "core/forward/schedule.h"
#include "core/io/model_catalog.h"
#include "core/io/manifest.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "ui/common/checked_values.h"
#include "ui/common/explain.h"
#include "ui/common/qcp.h"

namespace dlab::ui {

namespace {

const char* const kBundled[] = {"fashion-mnist-live", "fashion-mnist-cosine", "fashion-mnist-linear"};

QColor colourFor(int i) {
    static const QColor colours[] = {QColor(31, 119, 180), QColor(214, 39, 40), QColor(44, 160, 44), QColor(148, 103, 189),
                                     QColor(255, 127, 14), QColor(140, 86, 75)};
    return colours[i % 6];
}

QCustomPlot* makePlot(const QString& yLabel) {
    auto* p = new QCustomPlot;
    p->setMinimumHeight(220);
    p->yAxis->setLabel(yLabel);
    p->yAxis->setScaleType(QCPAxis::stLogarithmic);
    p->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    p->legend->setVisible(true);
    p->legend->setFont(QFont(p->font().family(), 7));
    p->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    p->setInteractions(QCP::iRangeZoom | QCP::iRangeDrag);
    return p;
}

QString defaultNote() {
    return LikelihoodView::tr("Linear against cosine: measure fashion-mnist-linear, then fashion-mnist-cosine. Under the linear "
                              "schedule x_t is almost pure noise for the last half of the timesteps, so the noise loss there is "
                              "near 0: training steps spent there teach little (docs/eval/schedules-3000*).");
}

}  // namespace

LikelihoodView::LikelihoodView(SamplingWorker* worker, bool cuda, QWidget* parent) : QWidget(parent), m_worker(worker) {
    auto* controls = new QGroupBox(tr("The variational bound, term by term"));
    auto* form = new QFormLayout;
    auto* intro = new QLabel(tr("Training minimises the noise loss at a random t; the bound on −log p(x) adds up the KL between "
                                "the true and the learned reverse step at every t. Both are measured here on test images."));
    intro->setWordWrap(true);
    form->addRow(intro);
    m_model = new QComboBox;
    m_model->setObjectName(QStringLiteral("likelihoodModel"));
    m_model->addItem(tr("Loaded model (Reverse chain)"), QString());
    for (const char* name : kBundled)
        if (resolve_model(name).ok()) m_model->addItem(QString::fromLatin1(name), QString::fromLatin1(name));
    m_model->setCurrentIndex(std::min(2, m_model->count() - 1));  // fashion-mnist-cosine when present
    form->addRow(tr("Model"), m_model);
    m_images = new QSpinBox;
    m_images->setRange(2, 10000);
    m_images->setValue(cuda ? 1000 : 64);
    m_images->setToolTip(tr("The first N Fashion-MNIST test images; the standard error falls like 1/√N"));
    form->addRow(tr("Test images"), m_images);
    m_timesteps = new QComboBox;
    m_timesteps->addItem(tr("20 (quick estimate)"), 20);
    m_timesteps->addItem(tr("50 (estimate)"), 50);
    m_timesteps->addItem(tr("100 (estimate)"), 100);
    m_timesteps->addItem(tr("all (exact)"), 0);
    m_timesteps->setCurrentIndex(cuda ? 3 : 1);
    m_timesteps->setToolTip(tr("L_0 always, and one timestep from each of K ranges of 1..T−1 that grow geometrically "
                               "(the terms fall like 1/t), weighted by the range's length: unbiased, and one network "
                               "evaluation per image and timestep"));
    form->addRow(tr("Timesteps"), m_timesteps);
    m_variance = new QComboBox;
    m_variance->addItem(tr("the model's (learned or β̃)"), 0);
    m_variance->addItem(tr("small: β̃_t"), 1);
    m_variance->addItem(tr("large: β_t"), 2);
    m_variance->setToolTip(tr("The variance of the learned reverse step p(x_{t−1} | x_t) in the bound"));
    form->addRow(tr("Variance"), m_variance);
    m_logSnrAxis = new QCheckBox(tr("x axis: log-SNR λ_t instead of t"));
    form->addRow(m_logSnrAxis);
    auto* buttons = new QHBoxLayout;
    m_compute = new QPushButton(tr("Measure"));
    m_stop = new QPushButton(tr("Stop"));
    m_stop->setEnabled(false);
    auto* clear = new QPushButton(tr("Clear"));
    buttons->addWidget(m_compute);
    buttons->addWidget(m_stop);
    buttons->addWidget(clear);
    form->addRow(buttons);
    m_progress = new QProgressBar;
    form->addRow(m_progress);
    m_summary = new QLabel;
    m_summary->setWordWrap(true);
    m_summary->setTextFormat(Qt::RichText);
    form->addRow(m_summary);
    m_note = new QLabel(defaultNote());
    m_note->setWordWrap(true);
    m_note->setStyleSheet(QStringLiteral("color: #555; font-size: 9pt;"));
    form->addRow(m_note);
    controls->setLayout(form);
    controls->setFixedWidth(300);

    m_termPlot = makePlot(tr("L_t (bits/dim, log)"));
    explain(m_termPlot, tr("The terms of the variational bound"),
            tr("L_t = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)), L_0 = −log p_θ(x_0 | x_1) (8-bit bins), in bits/dim"),
            tr("The bound is L_T + Σ L_t + L_0. Almost all of it sits at small t, where the model must get fine detail "
               "right; dashed: the bundled model's exact curve measured on the GPU."));
    m_lossPlot = makePlot(tr("noise loss ‖ε − ε̂‖² (log)"));
    explain(m_lossPlot, tr("The noise-prediction loss against t"),
            tr("E‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖², averaged over the test images"),
            tr("Training draws t uniformly and minimises this. Where it is near 0, x_t is almost pure noise and the "
               "step teaches little: the linear schedule has many such steps."));
    auto* right = new QVBoxLayout;
    right->addWidget(m_termPlot, 1);
    right->addWidget(m_lossPlot, 1);
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addLayout(right, 1);

    connect(m_compute, &QPushButton::clicked, this, &LikelihoodView::compute);
    connect(m_stop, &QPushButton::clicked, this, &LikelihoodView::stop);
    connect(clear, &QPushButton::clicked, this, &LikelihoodView::clearCurves);
    connect(m_logSnrAxis, &QCheckBox::toggled, this, [this] { replot(); });
    connect(m_worker, &SamplingWorker::likelihoodCurve, this, [this](const LikelihoodCurve& c, int requestId) {
        if (requestId != m_request || !m_running) return;
        if (!c.t.isEmpty()) m_curves[c.model] = c;
        m_progress->setRange(0, std::max(1, c.total));
        m_progress->setValue(c.done);
        if (!c.t.isEmpty() && !m_bundledTried.contains(c.model)) loadBundled(c.model);
        if (c.ended) {
            m_running = false;
            m_compute->setEnabled(true);
            m_stop->setEnabled(false);
            m_note->setText(c.complete ? defaultNote() : tr("Stopped: the curves hold the timesteps finished so far; no total."));
        }
        replot();
        if (c.ended) Q_EMIT finished();
    });
    connect(m_worker, &SamplingWorker::failed, this, [this](const QString& message) {
        if (!m_running) return;
        m_running = false;
        m_compute->setEnabled(true);
        m_stop->setEnabled(false);
        m_note->setText(message);
        Q_EMIT finished();
    });
    // The exact curves measured on the GPU for the schedule pair are shown before any measurement.
    loadBundled(QStringLiteral("fashion-mnist-linear"));
    loadBundled(QStringLiteral("fashion-mnist-cosine"));
    replot();
}

void LikelihoodView::setModelInfo(const ModelInfo& info) {
    m_loadedName = QFileInfo(info.path).completeBaseName();
    m_model->setItemText(0, tr("Loaded model: %1").arg(m_loadedName));
}

void LikelihoodView::configure(const QString& model, int images, int strata) {
    const int i = model.isEmpty() || model == QStringLiteral("loaded") ? 0 : m_model->findData(model);
    if (i >= 0) m_model->setCurrentIndex(i);
    m_images->setValue(images);
    const int k = m_timesteps->findData(strata);
    if (k >= 0) {
        m_timesteps->setCurrentIndex(k);
    } else {
        m_timesteps->addItem(tr("%1 (estimate)").arg(strata), strata);
        m_timesteps->setCurrentIndex(m_timesteps->count() - 1);
    }
}

void LikelihoodView::compute() {
    LikelihoodRequest r;
    r.model = m_model->currentData().toString();
    r.images = m_images->value();
    r.strata = m_timesteps->currentData().toInt();
    r.variance = m_variance->currentData().toInt();
    m_running = true;
    m_compute->setEnabled(false);
    m_stop->setEnabled(true);
    m_progress->setRange(0, 0);
    m_note->setText(tr("Measuring %1 on %2 test images…").arg(r.model.isEmpty() ? m_loadedName : r.model).arg(r.images));
    m_request = m_worker->newRequest();
    QMetaObject::invokeMethod(m_worker, "computeLikelihood", Qt::QueuedConnection, Q_ARG(dlab::ui::LikelihoodRequest, r),
                              Q_ARG(int, m_request));
}

void LikelihoodView::stop() {
    if (m_running) m_worker->requestStop();
}

void LikelihoodView::clearCurves() {
    m_curves.clear();
    replot();
}

void LikelihoodView::loadBundled(const QString& name) {
    m_bundledTried.insert(name);  // a model without a bundled curve is not looked up at every update
    m_bundled.remove(name);
    const auto model = resolve_model(name.toStdString());
    if (!model) return;
    QFile f(QString::fromStdString(sibling_path(model.value(), ".nll.csv")));
    if (!f.open(QIODevice::ReadOnly) || f.size() > (4 << 20)) return;
    // The model's schedule gives log-SNR for the alternative x axis.
    auto file = load_safetensors(model.value());
    if (!file) return;
    auto config = stored_model_config(file.value(), model.value());
    if (!config) return;
    auto schedule = NoiseSchedule::create(config->schedule);
    if (!schedule) return;
    const int64_t T = schedule->timesteps();
    const at::Tensor log_snr = schedule->log_snr().contiguous();
    LikelihoodCurve c;
    c.model = name;
    c.exact = true;
    const QStringList lines = QString::fromUtf8(f.readAll()).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
    for (int i = 1; i < lines.size() && i <= 100000; ++i) {
        const QStringList cells = lines[i].split(QLatin1Char(','));
        if (cells.size() < 4) continue;
        QStringList problems;
        const int64_t t = checkedInt(QJsonValue(cells[0].toDouble()), QStringLiteral("t"), 0, T - 1, -1, &problems);
        const double term = checkedReal(QJsonValue(cells[2].toDouble()), QStringLiteral("term"), -1.0, 1e6, 0, &problems);
        const double mse = checkedReal(QJsonValue(cells[3].toDouble()), QStringLiteral("mse"), 0.0, 1e6, 0, &problems);
        if (!problems.isEmpty() || t < 0) continue;
        c.t << double(t);
        c.term << term;
        c.mse << mse;
        c.logSnr << log_snr.data_ptr<double>()[t];
    }
    // The exact total and its standard error, from the manifest.
    if (auto manifest = read_manifest(model.value())) {
        c.bpd = manifest_figure(manifest.value(), {"figures", "nll", "bits_per_dim"}).value_or(0.0);
        c.se = manifest_figure(manifest.value(), {"figures", "nll", "standard_error"}).value_or(0.0);
        c.images = int(manifest_figure(manifest.value(), {"figures", "nll", "count"}).value_or(1000.0));
    }
    c.complete = true;
    if (!c.t.isEmpty()) m_bundled[name] = c;
}

QString LikelihoodView::summary() const { return m_summary->text(); }

void LikelihoodView::replot() {
    const bool lambda = m_logSnrAxis->isChecked();
    QStringList lines;
    for (QCustomPlot* p : {m_termPlot, m_lossPlot}) {
        p->clearGraphs();
        p->xAxis->setLabel(lambda ? tr("log-SNR λ_t = log(√ᾱ_t / √(1 − ᾱ_t))") : tr("timestep t"));
    }
    QStringList names = m_curves.keys();
    for (const QString& b : m_bundled.keys())
        if (!names.contains(b)) names << b;
    std::sort(names.begin(), names.end());
    for (int i = 0; i < names.size(); ++i) {
        const QString& name = names[i];
        const QColor colour = colourFor(i);
        auto add = [&](QCustomPlot* p, const LikelihoodCurve& curve, const QVector<double>& y, bool dashed, const QString& label) {
            QVector<double> yy = y;
            for (double& v : yy) v = std::max(v, 1e-9);  // a log axis: KL terms can be 0 to round-off
            auto* g = p->addGraph();
            g->setData(lambda ? curve.logSnr : curve.t, yy, lambda ? false : true);
            g->setPen(dashed ? QPen(colour.lighter(120), 1.2, Qt::DashLine) : QPen(colour, 2));
            if (!dashed && curve.t.size() <= 120) g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, colour, 4));
            g->setName(label);
        };
        if (m_bundled.contains(name)) {
            const LikelihoodCurve& b = m_bundled[name];
            const QString label = tr("%1: exact, all T (GPU)").arg(name);
            add(m_termPlot, b, b.term, true, label);
            add(m_lossPlot, b, b.mse, true, label);
            if (!m_curves.contains(name) && b.bpd > 0)
                lines << tr("<b>%1</b>: %2 ± %3 bits/dim<br><small>exact, all timesteps, N = %4 test images, on the GPU "
                            "(bundled; dashed)</small>").arg(name).arg(b.bpd, 0, 'f', 3).arg(b.se, 0, 'f', 3).arg(b.images);
        }
        if (!m_curves.contains(name)) continue;
        const LikelihoodCurve& c = m_curves[name];
        const QString live = c.complete || c.ended ? name : tr("%1 (running)").arg(name);
        add(m_termPlot, c, c.term, false, live);
        add(m_lossPlot, c, c.mse, false, live);
        if (c.complete) {
            lines << tr("<b>%1</b>: %2 ± %3 bits/dim<br><small>L_T %4 · L_0 %5 · ΣL_t %6; N = %7, %8, %9 variance, %10</small>")
                         .arg(name)
                         .arg(c.bpd, 0, 'f', 3)
                         .arg(c.se, 0, 'f', 3)
                         .arg(c.prior, 0, 'f', 4)
                         .arg(c.decoder, 0, 'f', 3)
                         .arg(c.diffusion, 0, 'f', 3)
                         .arg(c.images)
                         .arg(c.exact ? tr("all timesteps") : tr("%1 timesteps (estimate)").arg(c.t.size() - 1))
                         .arg(c.variance)
                         .arg(c.conditioning);
        }
    }
    m_summary->setText(lines.isEmpty() ? tr("No measurement yet: choose a model and press Measure.") : lines.join(QStringLiteral("<br>")));
    for (QCustomPlot* p : {m_termPlot, m_lossPlot}) {
        p->legend->setVisible(p->graphCount() > 0);
        p->rescaleAxes();
        if (p->graphCount() == 0) {
            p->xAxis->setRange(lambda ? -10 : 0, lambda ? 6 : 1000);
            p->yAxis->setRange(1e-4, 2);
        }
        p->replot();
    }
}

}  // namespace dlab::ui
