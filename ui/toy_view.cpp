#include "ui/toy_view.h"

#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/guidance.h"
#include "core/model_catalog.h"
#include "core/model_io.h"
#include "core/runtime.h"
#include "ui/qcp.h"

namespace dlab::ui {

namespace {

constexpr int kTrajectories = 12;
constexpr int kGrid = 15;
constexpr double kExtent = 3.2;

ToyChain runToyChain(const QString& path, int classIndex, int points, int steps,
                     std::shared_ptr<std::atomic<bool>> cancel) {
    ToyChain out;
    out.model = path;
    try {
        c10::NoGradGuard ng;
        auto model = load_model(path.toStdString(), c10::Device(c10::kCPU));
        if (!model) {
            out.error = QString::fromStdString(model.error());
            return out;
        }
        const ModelConfig& mc = model->config;
        if (mc.network.kind != NetworkKind::Mlp || mc.network.in_channels != 2) {
            out.error = QStringLiteral("%1 is not a 2-D model").arg(path);
            return out;
        }
        auto schedule = NoiseSchedule::create(mc.schedule).value();
        SamplerConfig sc;
        sc.steps = steps;
        // Clip the predicted x0 to the data's range: at t near T, abar is ~1e-9 under the cosine
        // schedule and x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) amplifies any error in eps.
        sc.clip_x0 = true;
        sc.clip_value = 5.0;
        auto sampler = make_sampler(schedule, sc);
        if (!sampler) {
            out.error = QString::fromStdString(sampler.error());
            return out;
        }
        Network net = model->network;
        ModelFn fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) { return net->forward(x, t, y); };
        const int64_t C = mc.network.num_classes;
        auto labelsFor = [&](int64_t n) {
            return C > 0 ? at::full({n}, classIndex < 0 ? C : classIndex, at::kLong) : at::Tensor();
        };
        auto control = std::make_shared<GuidanceControl>(1.0);
        Denoiser denoise = make_denoiser(C > 0 ? classifier_free_guidance(fn, labelsFor(points), C, control)
                                               : plain_denoiser(fn, at::Tensor()),
                                         schedule, mc.prediction);
        // A grid for the arrows, denoised with the same class.
        const at::Tensor lin = at::linspace(-kExtent, kExtent, kGrid);
        const auto mesh = at::meshgrid({lin, lin}, "ij");
        const at::Tensor grid = at::stack({mesh[0].flatten(), mesh[1].flatten()}, 1);
        Denoiser gridDenoise = make_denoiser(C > 0 ? classifier_free_guidance(fn, labelsFor(grid.size(0)), C, control)
                                                   : plain_denoiser(fn, at::Tensor()),
                                             schedule, mc.prediction);
        at::Generator gen = make_generator(1);
        at::Tensor x = at::randn({points, 2}, gen, at::TensorOptions().dtype(at::kFloat));
        auto toVec = [](const at::Tensor& t) {
            const at::Tensor c = t.to(at::kDouble).contiguous();
            return QVector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
        };
        for (int64_t i = 0; i < sampler.value()->num_steps(); ++i) {
            if (cancel->load()) {
                out.error = QStringLiteral("cancelled");
                return out;
            }
            const int64_t t = sampler.value()->timesteps()[size_t(i)];
            ToyFrame f;
            f.t = int(t);
            f.x = toVec(x.select(1, 0));
            f.y = toVec(x.select(1, 1));
            const X0Eps g = gridDenoise(grid, t);
            // Direction towards the predicted clean point, scaled for display.
            const at::Tensor d = (g.x0 - grid) * 0.25;
            f.ax = toVec(grid.select(1, 0));
            f.ay = toVec(grid.select(1, 1));
            f.dx = toVec(d.select(1, 0));
            f.dy = toVec(d.select(1, 1));
            out.frames.push_back(std::move(f));
            x = sampler.value()->step(i, x, denoise, gen).x_prev;
        }
        out.finalX = toVec(x.select(1, 0));
        out.finalY = toVec(x.select(1, 1));
    } catch (const std::exception& e) {
        out.error = QString::fromUtf8(e.what());
    }
    return out;
}

}  // namespace

ToyView::ToyView(QWidget* parent) : QWidget(parent) {
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
    connect(&m_watcher, &QFutureWatcher<ToyChain>::finished, this, [this] {
        ToyChain result = m_watcher.result();
        if (!result.error.isEmpty()) {
            if (result.error != QStringLiteral("cancelled"))
                m_label->setText(QStringLiteral("<span style='color:#b00'>%1</span>").arg(result.error.toHtmlEscaped()));
            return;
        }
        m_chain = std::move(result);
        m_scrub->setRange(0, m_chain.frames.size());
        m_scrub->setValue(0);
        m_player.start();
        Q_EMIT chainReady();
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
    m_cancel->store(true);         // the job stops before its next step
    m_watcher.waitForFinished();
}

void ToyView::cancel() {
    m_cancel->store(true);
    m_label->setText(tr("cancelled"));
}

void ToyView::run() {
    if (m_watcher.isRunning() || m_model->count() == 0) return;
    m_label->setText(tr("running…"));
    const QString path = m_model->currentData().toString();
    const int cls = m_class->currentData().toInt(), points = m_points->value(), steps = m_steps->value();
    m_cancel = std::make_shared<std::atomic<bool>>(false);
    auto cancel = m_cancel;
    m_watcher.setFuture(QtConcurrent::run([path, cls, points, steps, cancel] {
        return runToyChain(path, cls, points, steps, cancel);
    }));
}

void ToyView::showFrame(int index) {
    if (m_chain.frames.isEmpty()) return;
    m_plot->clearGraphs();
    m_plot->clearItems();
    m_plot->clearPlottables();
    const bool final = index >= m_chain.frames.size();
    const ToyFrame& f = m_chain.frames[std::min(index, int(m_chain.frames.size()) - 1)];
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
        for (int s = 0; s <= std::min(index, int(m_chain.frames.size()) - 1); ++s) {
            xs << m_chain.frames[s].x[k];
            ys << m_chain.frames[s].y[k];
        }
        if (final) {
            xs << m_chain.finalX[k];
            ys << m_chain.finalY[k];
        }
        curve->setData(xs, ys);
        curve->setPen(QPen(QColor(214, 39, 40, 170), 1.5));
    }
    auto* cloud = m_plot->addGraph();
    cloud->setLineStyle(QCPGraph::lsNone);
    cloud->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, QColor(31, 119, 180, 120), 3));
    cloud->setData(final ? m_chain.finalX : f.x, final ? m_chain.finalY : f.y);
    m_label->setText(final ? tr("final samples x₀ (%1 points)").arg(m_chain.finalX.size())
                           : tr("step %1 / %2 · t = %3").arg(index + 1).arg(m_chain.frames.size()).arg(f.t));
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace dlab::ui
