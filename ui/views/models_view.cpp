#include "ui/views/models_view.h"

#include <cmath>

#include <QComboBox>
#include <QFileInfo>
#include <QFile>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include "core/io/manifest.h"
#include "core/io/model_catalog.h"
#include "ui/common/checked_values.h"
#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/view_layout.h"
#include "ui/common/qcp.h"

namespace dlab::ui {

namespace {

const int kStops[] = {1, 2, 4, 8, 16, 32, 64, 250};
constexpr int kStopCount = int(sizeof kStops / sizeof kStops[0]);

}  // namespace

ModelsView::ModelsView(SamplingWorker* worker, QWidget* parent) : QWidget(parent), m_worker(worker) {
    auto* controls = new QGroupBox(tr("One big step or many small ones"));
    auto* form = new QFormLayout;
    auto* note = new QLabel(tr("The same class from a GAN and the VAE prior (one network evaluation each) and from the "
                               "diffusion model of the Reverse chain tab, DDIM with the steps below."));
    note->setWordWrap(true);
    form->addRow(note);
    m_class = new QComboBox;
    form->addRow(tr("Class"), m_class);
    m_seed = new QSpinBox;
    m_seed->setRange(0, 1000000);
    form->addRow(tr("Seed (A)"), m_seed);
    m_steps = new QSlider(Qt::Horizontal);
    m_steps->setRange(0, kStopCount - 1);
    m_steps->setValue(5);
    m_steps->setObjectName(QStringLiteral("diffusionSteps"));
    m_stepsLabel = new QLabel;
    m_stepsLabel->setMinimumWidth(30);
    auto* stepsRow = new QHBoxLayout;
    stepsRow->addWidget(m_steps);
    stepsRow->addWidget(m_stepsLabel);
    form->addRow(tr("Diffusion steps"), stepsRow);
    auto* compareButton = new QPushButton(tr("Compare"));
    form->addRow(compareButton);
    m_seedB = new QSpinBox;
    m_seedB->setRange(0, 1000000);
    m_seedB->setValue(1);
    form->addRow(tr("Seed B"), m_seedB);
    auto* interpolateButton = new QPushButton(tr("Interpolate A → B"));
    interpolateButton->setToolTip(tr("GAN: z moves linearly from seed A's to seed B's; diffusion: the starting noise moves "
                                     "on the sphere (slerp), DDIM 50"));
    form->addRow(interpolateButton);
    m_progress = new QProgressBar;
    form->addRow(m_progress);
    m_note = noteLabel();
    form->addRow(m_note);
    controls->setLayout(form);
    controls->setFixedWidth(290);

    const QString captions[3] = {tr("GAN: one step"), tr("VAE prior: one step"), tr("Diffusion")};
    auto* panels = new QHBoxLayout;
    for (int i = 0; i < 3; ++i) {
        m_panels[i] = new ImagePanel(captions[i]);
        panels->addWidget(m_panels[i], 1);
    }
    explain(m_panels[0], tr("GAN samples"), tr("x = G(z, y), z ~ N(0, I): one network evaluation"),
            tr("Sharp and typical of the class, but a GAN covers less of the data (lower recall)."));
    explain(m_panels[1], tr("VAE prior samples"), tr("x = D(z), z ~ N(0, I) for the unscaled latent: one evaluation"),
            tr("The autoencoder was trained to reconstruct, not to generate from its prior: shapeless blobs."));
    explain(m_panels[2], tr("Diffusion samples"), tr("x_T ~ N(0, I), then DDIM x_{t−1} = √ᾱ_{t−1} x̂₀ + √(1 − ᾱ_{t−1}) ε̂, one evaluation a step"),
            tr("Move the steps slider: one step gives the blurry mean; quality arrives by 16-64 steps."));

    m_plot = new QCustomPlot;
    m_plot->setMinimumHeight(250);
    m_plot->xAxis->setLabel(tr("network evaluations per sample (log)"));
    m_plot->xAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->xAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    m_plot->yAxis->setLabel(tr("FID (log)"));
    m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    m_plot->yAxis2->setVisible(true);
    m_plot->yAxis2->setLabel(tr("recall (dashed)"));
    m_plot->yAxis2->setRange(0, 1.02);
    m_plot->legend->setVisible(true);
    m_plot->legend->setFont(QFont(font().family(), 7));
    m_plot->plotLayout()->addElement(1, 0, m_plot->legend);
    m_plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    m_plot->legend->setWrap(4);
    m_plot->plotLayout()->setRowStretchFactor(1, 0.001);
    m_plot->setInteractions(QCP::iSelectPlottables);
    explain(m_plot, tr("The generative trilemma, measured"),
            tr("FID and recall against network evaluations per sample, N = 10,000, the same features and seed (diffusionlab-cli trilemma)"),
            tr("One step is fast (GAN) but covers less (recall); diffusion needs tens of steps for the same quality and "
               "then covers more. Click a point to sample it."));
    connect(m_plot, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable* p, int index, QMouseEvent*) {
        const QString sampler = p->property("sampler").toString();
        if (sampler.isEmpty()) {
            compare();
            return;
        }
        int k = 0;
        for (const TrilemmaPoint& t : m_points)
            if (t.sampler == sampler && k++ == index) setDiffusionSteps(t.steps);
    });

    layOutControlsPanelsPlot(this, controls, panels, m_plot);

    m_debounce.setSingleShot(true);
    m_debounce.setInterval(250);
    connect(&m_debounce, &QTimer::timeout, this, &ModelsView::compare);
    connect(m_steps, &QSlider::valueChanged, this, [this](int) {
        m_stepsLabel->setText(QString::number(diffusionSteps()));
        m_debounce.start();
    });
    m_stepsLabel->setText(QString::number(diffusionSteps()));
    connect(compareButton, &QPushButton::clicked, this, &ModelsView::compare);
    connect(interpolateButton, &QPushButton::clicked, this, &ModelsView::interpolate);
    connect(m_worker, &SamplingWorker::generativePanel, this, [this](int which, const QImage& grid, const QString& caption, int requestId) {
        if (which < 0 || which > 2 || m_pending == 0 || requestId != m_request) return;  // a replaced request's panels
        m_panels[which]->setImage(grid);
        m_panels[which]->setCaption(caption);
        if (--m_pending == 0) {
            m_progress->setValue(m_progress->maximum());
            Q_EMIT finished();
        }
    });
    connect(m_worker, &SamplingWorker::batchProgress, this, [this](int done, int total) {
        if (m_pending == 0) return;
        m_progress->setRange(0, total);
        m_progress->setValue(done);
    });
    connect(m_worker, &SamplingWorker::failed, this, [this](const QString& message) {
        if (m_pending == 0) return;
        m_pending = 0;
        m_note->setText(message);
    });
    loadTrilemma();
    plotTrilemma();
}

int ModelsView::diffusionSteps() const { return kStops[std::clamp(m_steps->value(), 0, kStopCount - 1)]; }

QImage ModelsView::panelImage(int which) const { return which >= 0 && which < 3 ? m_panels[which]->image() : QImage(); }

void ModelsView::setModelInfo(const ModelInfo& info) {
    const int previous = m_class->currentIndex();
    m_class->clear();
    for (int i = 0; i < info.classNames.size(); ++i) m_class->addItem(QStringLiteral("%1 · %2").arg(i).arg(info.classNames[i]), i);
    m_class->setCurrentIndex(std::max(0, std::min(previous, m_class->count() - 1)));
    const bool ok = info.image && !info.latent && !info.classNames.isEmpty();
    setEnabled(true);
    m_note->setText(ok ? tr("Diffusion: %1").arg(QFileInfo(info.path).completeBaseName())
                       : tr("Load a class-conditional pixel model (e.g. fashion-mnist-cosine) in the Reverse chain tab"));
}

void ModelsView::setDiffusionSteps(int steps) {
    int best = 0;
    for (int i = 0; i < kStopCount; ++i)
        if (std::abs(std::log(double(kStops[i]) / steps)) < std::abs(std::log(double(kStops[best]) / steps))) best = i;
    if (m_steps->value() != best) m_steps->setValue(best);  // compares after the debounce
    else compare();
}

void ModelsView::compare() { start(false); }
void ModelsView::interpolate() { start(true); }

void ModelsView::start(bool interpolation) {
    m_debounce.stop();
    GenerativeRequest r;
    r.classIndex = std::max(0, m_class->currentData().toInt());
    r.seed = quint64(m_seed->value());
    r.seedB = quint64(m_seedB->value());
    r.diffusionSteps = diffusionSteps();
    r.count = interpolation ? 8 : 16;
    r.interpolate = interpolation;
    m_pending = interpolation ? 2 : 3;
    if (interpolation) {
        m_panels[1]->setImage(QImage());
        m_panels[1]->setCaption(tr("VAE prior: (no interpolation)"));
    }
    m_progress->setRange(0, 0);
    m_request = m_worker->newRequest();
    QMetaObject::invokeMethod(m_worker, "generateModels", Qt::QueuedConnection, Q_ARG(dlab::ui::GenerativeRequest, r),
                              Q_ARG(int, m_request));
}

void ModelsView::loadTrilemma() {
    m_points.clear();
    const auto model = resolve_model("fashion-mnist-cosine");
    if (!model) return;
    QFile f(QString::fromStdString(sibling_path(model.value(), ".trilemma.csv")));
    if (!f.open(QIODevice::ReadOnly) || f.size() > (1 << 20)) return;
    const QStringList lines = QString::fromUtf8(f.readAll()).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
    for (int i = 1; i < lines.size() && m_points.size() < 200; ++i) {
        const QStringList c = lines[i].split(QLatin1Char(','));
        if (c.size() < 11) continue;
        QStringList problems;
        TrilemmaPoint p;
        p.generator = c[0].left(40);
        p.sampler = c[1].left(20);
        p.steps = int(checkedInt(QJsonValue(c[2]), QStringLiteral("steps"), 1, 100000, 0, &problems));
        p.nfe = int(checkedInt(QJsonValue(c[3]), QStringLiteral("nfe"), 1, 200000, 0, &problems));
        p.fid = checkedReal(QJsonValue(c[4]), QStringLiteral("fid"), 0, 1e5, 0, &problems);
        p.precision = checkedReal(QJsonValue(c[5]), QStringLiteral("precision"), 0, 1, 0, &problems);
        p.recall = checkedReal(QJsonValue(c[6]), QStringLiteral("recall"), 0, 1, 0, &problems);
        p.secondsPer10k = checkedReal(QJsonValue(c[10]), QStringLiteral("s/10k"), 0, 1e9, 0, &problems);
        if (problems.isEmpty() && p.fid > 0) m_points << p;
    }
}

void ModelsView::plotTrilemma() {
    m_plot->clearPlottables();
    const QColor colours[] = {QColor(31, 119, 180), QColor(44, 160, 44), QColor(214, 39, 40), QColor(148, 103, 189)};
    auto addCurve = [&](const QString& name, const QString& generator, const QString& sampler, const QColor& colour) {
        QVector<double> x, fid, recall;
        for (const TrilemmaPoint& p : m_points)
            if (p.generator == generator && p.sampler == sampler) {
                x << p.nfe;
                fid << p.fid;
                recall << p.recall;
            }
        if (x.isEmpty()) return;
        auto* g = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis);
        g->setData(x, fid, true);
        g->setPen(QPen(colour, 2));
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, colour, 8));
        g->setName(name + tr(" FID"));
        g->setProperty("sampler", sampler);
        auto* r = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis2);
        r->setData(x, recall, true);
        r->setPen(QPen(colour, 1, Qt::DashLine));
        r->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssSquare, colour, 5));
        r->setName(name + tr(" recall"));
        r->setProperty("sampler", sampler);
    };
    addCurve(tr("GAN"), QStringLiteral("GAN"), QString(), colours[2]);
    addCurve(tr("VAE"), QStringLiteral("VAE prior"), QString(), colours[3]);
    addCurve(tr("DDIM"), QStringLiteral("diffusion"), QStringLiteral("ddim"), colours[0]);
    addCurve(tr("DPM++"), QStringLiteral("diffusion"), QStringLiteral("dpmpp2m"), colours[1]);
    m_plot->xAxis->setRange(0.7, 1500);
    m_plot->yAxis->setRange(20, 3000);
    m_plot->replot();
    if (m_points.isEmpty()) m_note->setText(tr("No measured trilemma found (resources/models/fashion-mnist-cosine.trilemma.csv)"));
}

}  // namespace dlab::ui
