#include "ui/views/sds_view.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "core/data/datasets.h"
#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/view_layout.h"
#include "ui/common/qcp.h"

namespace dlab::ui {

SdsView::SdsView(SamplingWorker* worker, const QString& device, QWidget* parent)
    : QWidget(parent), m_worker(worker), m_device(device) {
    auto* controls = new QGroupBox(tr("Score distillation (DreamFusion)"));
    auto* form = new QFormLayout;
    auto* intro = new QLabel(tr("No chain is sampled: the image (or a 3-D scene rendered from random viewpoints) is itself "
                                "optimised. Each step noises it to a random t, asks the frozen class model for the noise, and "
                                "moves it along w(t)(ε̂ − ε) with a large guidance scale."));
    intro->setWordWrap(true);
    form->addRow(intro);
    m_class = fashionClassCombo(7);
    form->addRow(tr("Class"), m_class);
    m_threeD = new QCheckBox(tr("3-D scene (voxels, random azimuths)"));
    m_threeD->setToolTip(tr("A 28³ grid of density and brightness, rendered by emission-absorption from 4 random azimuths "
                            "per step. The model only ever saw garments from the front: every side must look like one."));
    form->addRow(m_threeD);
    m_guidance = new QDoubleSpinBox;
    m_guidance->setRange(0, 1000);
    m_guidance->setDecimals(0);
    m_guidance->setValue(100);
    m_guidance->setToolTip(tr("Classifier-free guidance scale s; DreamFusion used 100. Lower it and watch the result lose its "
                              "shape; the over-saturated look at high s is SDS's mode-seeking."));
    form->addRow(tr("Guidance s"), m_guidance);
    m_steps = new QSpinBox;
    m_steps->setRange(1, 100000);
    m_steps->setValue(300);
    form->addRow(tr("Steps"), m_steps);
    m_lr = new QDoubleSpinBox;
    m_lr->setRange(0.001, 1.0);
    m_lr->setDecimals(3);
    m_lr->setSingleStep(0.01);
    m_lr->setValue(0.03);
    form->addRow(tr("Learning rate"), m_lr);
    m_start = new QPushButton(tr("▶ Start"));
    m_continue = new QPushButton(tr("Continue"));
    m_continue->setToolTip(tr("The same run, for as many steps again"));
    m_stop = new QPushButton(tr("Stop"));
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_start);
    buttons->addWidget(m_continue);
    buttons->addWidget(m_stop);
    form->addRow(buttons);
    m_progress = new QProgressBar;
    m_progress->setFormat(QStringLiteral("%v / %m"));
    form->addRow(m_progress);
    m_status = noteLabel();
    form->addRow(m_status);
    controls->setLayout(form);
    controls->setFixedWidth(300);

    m_image = new ImagePanel(tr("the optimised image"));
    m_turning = new ImagePanel(tr("the scene, turning"));
    m_sample = new ImagePanel(tr("ordinary samples (DDIM 25, s = 3)"));
    explain(m_sample, tr("Ancestral sampling of the same class"), tr("x_T ~ N(0, I), then 25 guided denoising steps"),
            tr("What the model's distribution looks like: varied garments with natural grey levels. SDS does not sample it; "
               "it climbs to one of its modes."));
    explain(m_image, tr("What SDS has made so far"), tr("x ← x − lr · Adam(w(t)(ε̂(x_t; y, s) − ε)), x_t = √ᾱ_t x + √(1 − ᾱ_t) ε"),
            tr("Compare it with the Reverse chain's samples of the same class: SDS seeks the mode, so it comes out flat and "
               "over-saturated where ancestral sampling gives varied, natural garments."));
    explain(m_turning, tr("The 3-D scene from a turning camera"), tr("C = Σ_i T_i (1 − e^{−σ_i δ}) c_i + T_end · background"),
            tr("Fashion-MNIST shows garments only from the front, so every azimuth is pushed towards the same front view: "
               "the scene becomes a shape that looks like the garment from all sides, not a 3-D garment."));
    m_plot = new QCustomPlot;
    m_plot->setMinimumHeight(200);
    m_plot->xAxis->setLabel(tr("step"));
    m_plot->yAxis->setLabel(tr("pseudo-loss w(t)‖ε̂ − ε‖²"));
    m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    m_plot->addGraph();
    m_plot->graph(0)->setPen(QPen(QColor(31, 119, 180, 90)));
    m_plot->graph(0)->setName(tr("each step"));
    m_plot->addGraph();
    m_plot->graph(1)->setPen(QPen(QColor(214, 39, 40), 2));
    m_plot->graph(1)->setName(tr("mean of the last 25 reports"));
    m_plot->legend->setVisible(true);
    auto* panels = new QHBoxLayout;
    panels->addWidget(m_image, 1);
    panels->addWidget(m_turning, 1);
    panels->addWidget(m_sample, 1);
    layOutControlsPanelsPlot(this, controls, panels, m_plot);

    connect(m_start, &QPushButton::clicked, this, &SdsView::start);
    connect(m_continue, &QPushButton::clicked, this, &SdsView::continueRun);
    connect(m_stop, &QPushButton::clicked, this, &SdsView::stop);
    connect(m_threeD, &QCheckBox::toggled, this, [this](bool on) { m_turning->setVisible(on); });
    m_turning->setVisible(false);
    connect(m_worker, &SamplingWorker::sdsFrame, this, &SdsView::onFrame);
    connect(m_worker, &SamplingWorker::sdsStopped, this, &SdsView::onStopped);
    connect(m_worker, &SamplingWorker::failed, this, [this](const QString& m) {
        if (!m_running || !m.startsWith(tr("Score distillation"))) return;
        setRunning(false);
        m_status->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(m.toHtmlEscaped()));
    });
    m_continue->setEnabled(false);
    m_stop->setEnabled(false);
}

void SdsView::configure(int label, bool threeD, double guidance, int steps) {
    if (const int i = m_class->findData(label); i >= 0) m_class->setCurrentIndex(i);
    m_threeD->setChecked(threeD);
    m_guidance->setValue(guidance);
    m_steps->setValue(steps);
}

void SdsView::setRunning(bool running) {
    m_running = running;
    m_start->setEnabled(!running);
    m_stop->setEnabled(running);
    m_continue->setEnabled(!running && !m_frames.isEmpty());
}

void SdsView::start() {
    SdsRequest r;
    r.label = m_class->currentData().toInt();
    r.threeD = m_threeD->isChecked();
    r.guidance = m_guidance->value();
    r.steps = m_steps->value();
    r.lr = m_lr->value();
    r.device = m_device;
    m_frames.clear();
    m_plot->graph(0)->data()->clear();
    m_plot->graph(1)->data()->clear();
    m_sample->setImage(QImage());
    m_plot->replot();
    m_request = m_worker->newRequest();
    m_progress->setRange(0, r.steps);
    m_progress->setValue(0);
    m_status->setText(tr("Loading the model…"));
    m_image->setCaption(r.threeD ? tr("the scene from the front") : tr("the optimised image"));
    m_turning->setVisible(r.threeD);
    setRunning(true);
    QMetaObject::invokeMethod(m_worker, "startSds", Qt::QueuedConnection, Q_ARG(dlab::ui::SdsRequest, r), Q_ARG(int, m_request));
}

void SdsView::continueRun() {
    if (m_frames.isEmpty()) return;
    m_request = m_worker->newRequest();
    m_progress->setRange(0, m_frames.last().step + m_steps->value());
    setRunning(true);
    QMetaObject::invokeMethod(m_worker, "continueSds", Qt::QueuedConnection, Q_ARG(int, m_steps->value()), Q_ARG(int, m_request));
}

void SdsView::stop() {
    if (!m_running) return;
    m_worker->requestStop();
}

void SdsView::onFrame(const SdsFrame& f, int requestId) {
    if (requestId != m_request) return;
    m_frames.push_back(f);
    m_image->setImage(f.image);
    if (!f.turning.isNull()) {
        m_turning->setImage(f.turning);
        m_turning->setCaption(tr("the scene from %1°").arg(f.azimuth, 0, 'f', 0));
    }
    m_progress->setRange(0, f.total);
    m_progress->setValue(f.step);
    if (!f.ancestral.isNull()) m_sample->setImage(f.ancestral);
    m_plot->graph(0)->addData(f.step, std::max(1e-6, f.loss));
    double sum = 0;
    int n = 0;
    for (int i = m_frames.size() - 1; i >= 0 && n < 25; --i, ++n) sum += m_frames[i].loss;
    m_plot->graph(1)->addData(f.step, std::max(1e-6, sum / n));
    m_plot->rescaleAxes();
    m_plot->replot(QCustomPlot::rpQueuedReplot);
    m_status->setText(tr("%1 · step %2 of %3 · pseudo-loss %4").arg(f.title).arg(f.step).arg(f.total).arg(f.loss, 0, 'f', 3));
}

void SdsView::onStopped(int done, int total, bool completed, int requestId) {
    if (requestId != m_request) return;
    setRunning(false);
    m_continue->setEnabled(done > 0);
    Q_EMIT statusMessage(completed ? tr("Score distillation: %1 steps done").arg(done)
                                   : tr("Score distillation stopped at step %1 of %2; Continue keeps the run").arg(done).arg(total));
    Q_EMIT finished();
}

}  // namespace dlab::ui
