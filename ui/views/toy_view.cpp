#include "ui/views/toy_view.h"

#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include "core/io/model_catalog.h"
#include "ui/common/explain.h"
#include "ui/common/progress_eta.h"
#include "ui/common/qcp.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

namespace {
constexpr int kTrajectories = 12;
constexpr double kExtent = ToyChainJob::kExtent;
}  // namespace

ToyView::ToyView(SamplingWorker* worker, QWidget* parent) : QWidget(parent), m_worker(worker) {
    auto* controls = new QGroupBox(tr("2-D lab"));
    auto* form = new QFormLayout;
    m_model = new QComboBox;
    for (const auto& [name, path] : bundled_models())
        if (name.rfind("toy-", 0) == 0) m_model->addItem(QString::fromStdString(name.substr(4)), QString::fromStdString(path));
    form->addRow(tr("Toy model"), m_model);
    m_class = new QComboBox;
    m_class->addItem(tr("unconditional"), -1);
    for (int i = 0; i < 8; ++i) m_class->addItem(tr("class %1").arg(i), i);
    form->addRow(tr("Class"), m_class);
    m_points = new QSpinBox;
    m_points->setRange(100, 20000);
    m_points->setValue(2000);
    form->addRow(tr("Points"), m_points);
    m_steps = new QSpinBox;
    m_steps->setObjectName(QStringLiteral("steps"));
    m_steps->setRange(2, 1000);
    m_steps->setValue(50);
    form->addRow(tr("Steps (DDIM)"), m_steps);
    auto* runButton = new QPushButton(tr("Run chain"));
    auto* cancelButton = new QPushButton(tr("Cancel"));
    m_play = new QPushButton(tr("▶ Replay"));
    form->addRow(runButton);
    form->addRow(cancelButton);
    form->addRow(m_play);
    m_progress = new QProgressBar;
    m_progress->setFormat(QStringLiteral("%v / %m"));
    form->addRow(m_progress);
    m_label = new QLabel;
    m_label->setWordWrap(true);
    form->addRow(m_label);
    controls->setLayout(form);
    controls->setFixedWidth(290);

    m_plot = new QCustomPlot;
    m_plot->xAxis->setRange(-kExtent - 0.3, kExtent + 0.3);
    m_plot->yAxis->setRange(-kExtent - 0.3, kExtent + 0.3);
    m_plot->xAxis->setLabel(QStringLiteral("x₁"));
    m_plot->yAxis->setLabel(QStringLiteral("x₂"));
    explain(m_plot, tr("2-D samples along the reverse chain"), tr("every point an x_t of its own chain; x_T ~ N(0, I), x_{t−1} from the denoiser"),
            tr("Blue: the samples at the shown step; grey arrows: the model's denoising direction there; red: a few points' paths. Scrub to see the cloud take the data's shape."));
    m_scrub = new QSlider(Qt::Horizontal);
    auto* right = new QVBoxLayout;
    right->addWidget(m_plot, 1);
    right->addWidget(m_scrub);
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addLayout(right, 1);

    connect(runButton, &QPushButton::clicked, this, &ToyView::run);
    connect(cancelButton, &QPushButton::clicked, this, &ToyView::cancel);
    connect(m_scrub, &QSlider::valueChanged, this, &ToyView::showFrame);
    connect(m_worker, &SamplingWorker::toyFrame, this, [this](const ToyFrame& f, int id) {
        if (id != m_request) return;  // a cancelled or replaced chain
        m_pending.frames.push_back(f);
        showProgress(m_progress, f.index + 1, f.total, m_clock);
        if (!f.last) {
            // The cloud moves while the chain runs: the newest frame, at most once per event-loop turn.
            if (!m_liveQueued) {
                m_liveQueued = true;
                QTimer::singleShot(15, this, [this] {
                    m_liveQueued = false;
                    if (m_request == 0 || m_pending.frames.isEmpty()) return;
                    drawFrame(m_pending, int(m_pending.frames.size()) - 1);
                    m_label->setText(tr("running: ") + m_label->text());
                });
            }
            return;
        }
        m_progress->setFormat(QStringLiteral("%v / %m"));
        m_request = 0;
        m_pending.finalX = f.finalX;
        m_pending.finalY = f.finalY;
        m_chain = std::move(m_pending);
        m_pending = ToyChain();
        m_scrub->setRange(0, m_chain.frames.size());
        m_scrub->setValue(0);
        showFrame(0);
        m_player.start();
        Q_EMIT chainReady();
    });
    connect(m_worker, &SamplingWorker::toyFailed, this, [this](const QString& message, int id) {
        if (id != m_request) return;
        m_request = 0;
        m_pending = ToyChain();
        m_label->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(message.toHtmlEscaped()));
    });
    m_player.setInterval(60);
    connect(&m_player, &QTimer::timeout, this, [this] {
        if (m_scrub->value() >= m_scrub->maximum()) {
            m_player.stop();
            return;
        }
        m_scrub->setValue(m_scrub->value() + 1);
    });
    connect(m_play, &QPushButton::clicked, this, [this] {
        m_scrub->setValue(0);
        m_player.start();
    });
}

ToyView::~ToyView() {
    m_player.stop();
    if (m_worker) m_worker->newToyRequest();  // a running chain stops before its next step
}

void ToyView::cancel() {
    if (m_worker) m_worker->newToyRequest();
    m_request = 0;
    m_pending = ToyChain();
    m_label->setText(tr("cancelled"));
}

void ToyView::run() {
    if (m_request != 0 || m_model->count() == 0 || !m_worker) return;
    m_label->setText(tr("running…"));
    ToyChainRequest r;
    r.model = m_model->currentData().toString();
    r.classIndex = m_class->currentData().toInt();
    r.points = m_points->value();
    r.steps = m_steps->value();
    m_pending = ToyChain();
    m_request = m_worker->newToyRequest();
    m_clock.start();
    m_progress->setRange(0, r.steps);
    m_progress->setValue(0);
    QMetaObject::invokeMethod(m_worker, "startToyChain", Qt::QueuedConnection, Q_ARG(dlab::ui::ToyChainRequest, r),
                              Q_ARG(int, m_request));
}

void ToyView::showFrame(int index) { drawFrame(m_chain, index); }

void ToyView::drawFrame(const ToyChain& chain, int index) {
    if (chain.frames.isEmpty()) return;
    m_plot->clearGraphs();
    m_plot->clearItems();
    m_plot->clearPlottables();
    const bool final = index >= chain.frames.size();
    const ToyFrame& f = chain.frames[std::min(index, int(chain.frames.size()) - 1)];
    // Arrows: the model's denoising direction at this t.
    if (!final) {
        for (int i = 0; i < f.ax.size(); ++i) {
            auto* a = new QCPItemLine(m_plot);
            a->start->setCoords(f.ax[i], f.ay[i]);
            a->end->setCoords(f.ax[i] + f.dx[i], f.ay[i] + f.dy[i]);
            a->setHead(QCPLineEnding(QCPLineEnding::esSpikeArrow, 6, 8));
            a->setPen(QPen(QColor(150, 150, 150), 1));
        }
    }
    // Trajectories of a few points up to this step.
    for (int k = 0; k < kTrajectories; ++k) {
        auto* curve = new QCPCurve(m_plot->xAxis, m_plot->yAxis);
        QVector<double> xs, ys;
        for (int s = 0; s <= std::min(index, int(chain.frames.size()) - 1); ++s) {
            xs << chain.frames[s].x[k];
            ys << chain.frames[s].y[k];
        }
        if (final) {
            xs << chain.finalX[k];
            ys << chain.finalY[k];
        }
        curve->setData(xs, ys);
        curve->setPen(QPen(QColor(214, 39, 40, 170), 1.5));
    }
    auto* cloud = m_plot->addGraph();
    cloud->setLineStyle(QCPGraph::lsNone);
    cloud->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, QColor(31, 119, 180, 120), 3));
    cloud->setData(final ? chain.finalX : f.x, final ? chain.finalY : f.y);
    m_label->setText(final ? tr("final samples x₀ (%1 points)").arg(chain.finalX.size())
                           : tr("step %1 / %2 · t = %3").arg(index + 1).arg(f.total).arg(f.t));
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace dlab::ui
