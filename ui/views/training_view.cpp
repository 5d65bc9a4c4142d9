#include "ui/views/training_view.h"

#include <cmath>

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QTextStream>
#include <QVBoxLayout>

#include "core/data/datasets.h"
#include "ui/common/explain.h"
#include "ui/common/image_panel.h"
#include "ui/common/progress_eta.h"
#include "ui/common/qcp.h"

namespace dlab::ui {

TrainingView::TrainingView(RunHistory* history, bool cudaAvailable, QWidget* parent)
    : QWidget(parent), m_history(history) {
    m_worker = new TrainingWorker;
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    connect(m_worker, &TrainingWorker::progress, this, &TrainingView::onProgress);
    connect(m_worker, &TrainingWorker::samplesReady, this, &TrainingView::onSamples);
    connect(m_worker, &TrainingWorker::finished, this, &TrainingView::onFinished);
    connect(m_worker, &TrainingWorker::started, this, [this](const QString& d) { m_status->setText(d); });
    m_thread.setObjectName(QStringLiteral("training-worker"));
    m_thread.start();

    auto* controls = new QGroupBox(tr("Training"));
    auto* form = new QFormLayout;
    m_dataset = new QComboBox;
    m_dataset->addItem(tr("Fashion-MNIST (60,000 images)"), QStringLiteral("fashion-mnist"));
    m_dataset->addItem(tr("Image folder…"), QStringLiteral("images:"));
    for (const auto& n : toy_names())
        m_dataset->addItem(tr("2-D toy: %1").arg(QString::fromStdString(n)), QStringLiteral("toy:") + QString::fromStdString(n));
    form->addRow(tr("Data"), m_dataset);
    auto* folderRow = new QHBoxLayout;
    m_folder = new QLineEdit;
    m_folder->setPlaceholderText(tr("class subfolders = labels"));
    auto* browse = new QPushButton(tr("…"));
    browse->setFixedWidth(28);
    folderRow->addWidget(m_folder);
    folderRow->addWidget(browse);
    form->addRow(tr("Folder"), folderRow);
    m_imageSize = new QSpinBox;
    m_imageSize->setRange(8, 256);
    m_imageSize->setSingleStep(4);
    m_imageSize->setValue(32);
    m_channels = new QComboBox;
    m_channels->addItem(tr("grey"), 1);
    m_channels->addItem(tr("RGB"), 3);
    auto* imgRow = new QHBoxLayout;
    imgRow->addWidget(m_imageSize);
    imgRow->addWidget(m_channels);
    form->addRow(tr("Size, colour"), imgRow);
    m_family = new QComboBox;
    m_family->setObjectName(QStringLiteral("family"));
    m_family->addItem(tr("diffusion (many small steps)"), QStringLiteral("diffusion"));
    m_family->addItem(tr("GAN (one big step)"), QStringLiteral("gan"));
    m_family->setToolTip(tr("A GAN trains a generator against a discriminator (hinge loss); both losses are plotted. "
                            "Images only; schedule and prediction do not apply."));
    form->addRow(tr("Model"), m_family);
    m_size = new QComboBox;
    m_size->addItem(tr("tiny (fast on a CPU)"), QStringLiteral("tiny"));
    m_size->addItem(tr("small (the bundled model's size)"), QStringLiteral("small"));
    m_size->addItem(tr("large"), QStringLiteral("large"));
    form->addRow(tr("Model size"), m_size);
    m_schedule = new QComboBox;
    for (const char* s : {"cosine", "linear", "scaled-linear", "sigmoid"}) m_schedule->addItem(QString::fromLatin1(s));
    form->addRow(tr("Schedule"), m_schedule);
    m_snrShift = new QDoubleSpinBox;
    m_snrShift->setObjectName(QStringLiteral("snrShift"));
    m_snrShift->setRange(0.01, 100.0);
    m_snrShift->setDecimals(2);
    m_snrShift->setValue(1.0);
    m_snrShift->setPrefix(QStringLiteral("× "));
    m_snrShift->setToolTip(tr("Multiply the schedule's SNR(t) at every t (the Schedules tab draws it): above 1 "
                              "leaves more of the image at every step; 1 is the schedule as published"));
    form->addRow(tr("SNR shift"), m_snrShift);
    m_prediction = new QComboBox;
    m_prediction->addItem(tr("noise ε"), QStringLiteral("eps"));
    m_prediction->addItem(tr("velocity v"), QStringLiteral("v"));
    m_prediction->addItem(tr("clean image x₀"), QStringLiteral("x0"));
    form->addRow(tr("Predicts"), m_prediction);
    m_steps = new QSpinBox;
    m_steps->setRange(10, 10000000);
    m_steps->setSingleStep(500);
    m_steps->setValue(2000);
    form->addRow(tr("Steps"), m_steps);
    m_batch = new QSpinBox;
    m_batch->setRange(1, 4096);
    m_batch->setValue(64);
    form->addRow(tr("Batch"), m_batch);
    m_lr = new QDoubleSpinBox;
    m_lr->setDecimals(5);
    m_lr->setRange(0.00001, 0.1);
    m_lr->setSingleStep(0.0001);
    m_lr->setValue(0.0002);
    form->addRow(tr("Learning rate"), m_lr);
    m_device = new QComboBox;
    m_device->addItem(tr("CPU"), QStringLiteral("cpu"));
    if (cudaAvailable) m_device->addItem(tr("CUDA"), QStringLiteral("cuda"));
    form->addRow(tr("Device"), m_device);
    m_seed = new QSpinBox;
    m_seed->setRange(0, 1000000);
    form->addRow(tr("Seed"), m_seed);
    m_sampleEvery = new QSpinBox;
    m_sampleEvery->setRange(0, 1000000);
    m_sampleEvery->setSingleStep(50);
    m_sampleEvery->setValue(200);
    m_sampleEvery->setToolTip(tr("Steps between sample grids from the EMA weights (0: none)"));
    form->addRow(tr("Samples every"), m_sampleEvery);
    m_start = new QPushButton(tr("Start"));
    m_pause = new QPushButton(tr("Pause"));
    m_stop = new QPushButton(tr("Stop"));
    m_resume = new QPushButton(tr("Resume"));
    m_resume->setToolTip(tr("Continue the stopped run from its checkpoint"));
    auto* buttons = new QHBoxLayout;
    for (QPushButton* b : {m_start, m_pause, m_stop, m_resume}) buttons->addWidget(b);
    form->addRow(buttons);
    m_open = new QPushButton(tr("Sample this model in the Reverse chain tab"));
    m_open->setEnabled(false);
    form->addRow(m_open);
    m_progress = new QProgressBar;
    form->addRow(m_progress);
    m_status = new QLabel(tr("Ready"));
    m_status->setWordWrap(true);
    m_status->setStyleSheet(QStringLiteral("color: #555; font-size: 9pt;"));
    form->addRow(m_status);
    controls->setLayout(form);
    controls->setFixedWidth(310);

    m_plot = new QCustomPlot;
    m_plot->xAxis->setLabel(tr("step"));
    m_plot->yAxis->setLabel(tr("loss"));
    m_plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
    m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    m_plot->legend->setVisible(true);
    m_plot->legend->setFont(QFont(font().family(), 8));
    auto* raw = m_plot->addGraph();
    raw->setName(tr("loss (batch)"));
    raw->setPen(QPen(QColor(160, 160, 160), 1));
    auto* smooth = m_plot->addGraph();
    smooth->setName(tr("smoothed"));
    smooth->setPen(QPen(QColor(31, 119, 180), 2));
    m_plot->setMinimumHeight(240);
    m_stats = new QLabel(tr("lr – · – img/s · ETA –"));
    m_samples = new ImagePanel(tr("EMA samples appear here while training"));
    explain(m_plot, tr("The training loss"), tr("L = ‖ε − ε_θ(√ᾱ_t x₀ + √(1 − ᾱ_t) ε, t)‖², averaged over the batch (log scale)"),
            tr("Grey: every logged batch; blue: smoothed. It falls fast, then slowly: late gains show in the samples more than here."));
    explain(m_samples, tr("Samples from the EMA weights"), tr("θ_EMA ← d θ_EMA + (1 − d) θ after every step"),
            tr("Drawn every few hundred steps with DDIM; they sharpen as training goes on."));

    auto* right = new QVBoxLayout;
    right->addWidget(m_plot, 3);
    right->addWidget(m_stats);
    right->addWidget(m_samples, 2);
    auto* layout = new QHBoxLayout(this);
    layout->addWidget(controls);
    layout->addLayout(right, 1);

    auto updateDataControls = [this] {
        const bool folder = m_dataset->currentData().toString() == QStringLiteral("images:");
        m_folder->setEnabled(folder);
        m_imageSize->setEnabled(folder);
        m_channels->setEnabled(folder);
    };
    connect(m_dataset, qOverload<int>(&QComboBox::currentIndexChanged), this, updateDataControls);
    connect(m_family, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int) {
        const bool gan = m_family->currentData().toString() == QStringLiteral("gan");
        m_schedule->setEnabled(!gan);
        m_snrShift->setEnabled(!gan);
        m_prediction->setEnabled(!gan);
    });
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Image folder"), m_folder->text());
        if (!dir.isEmpty()) {
            m_folder->setText(dir);
            m_dataset->setCurrentIndex(1);
        }
    });
    connect(m_start, &QPushButton::clicked, this, &TrainingView::start);
    connect(m_pause, &QPushButton::clicked, this, &TrainingView::togglePause);
    connect(m_stop, &QPushButton::clicked, this, &TrainingView::stop);
    connect(m_resume, &QPushButton::clicked, this, &TrainingView::resume);
    connect(m_open, &QPushButton::clicked, this, [this] {
        const QString path = m_run.folder + QStringLiteral("/model.safetensors");
        if (QFileInfo::exists(path)) Q_EMIT openModel(m_run.title, path);
        else m_status->setText(tr("The model file of this run was deleted"));
    });

    QSettings settings;
    settings.beginGroup(QStringLiteral("training"));
    QStringList problems;
    setRequest(TrainingRequest::fromJson(QJsonObject::fromVariantMap(settings.value(QStringLiteral("request")).toMap()), &problems));
    settings.endGroup();
    if (!problems.isEmpty())
        m_status->setText(tr("The saved training settings had values out of range, defaults used: %1").arg(problems.join(QStringLiteral("; "))));
    updateDataControls();
    setRunning(false);
}

TrainingView::~TrainingView() {
    QSettings settings;
    settings.beginGroup(QStringLiteral("training"));
    settings.setValue(QStringLiteral("request"), request().toJson().toVariantMap());
    settings.endGroup();
    // Closing with a run going: stop it (the trainer keeps a checkpoint and a model) and record it.
    m_worker->setPaused(false);
    m_worker->requestStop();
    m_thread.quit();
    m_thread.wait();
    if (m_running && !m_run.id.isEmpty()) {
        m_run.status = QStringLiteral("stopped");
        m_run.message = tr("stopped when the application closed; resume continues from the checkpoint");
        m_history->save(m_run);
    }
}

TrainingRequest TrainingView::request() const {
    TrainingRequest r;
    r.family = m_family->currentData().toString();
    const QString ds = m_dataset->currentData().toString();
    r.dataset = ds == QStringLiteral("images:") ? ds + m_folder->text() : ds;
    r.imageSize = m_imageSize->value();
    r.channels = m_channels->currentData().toInt();
    r.sizePreset = m_size->currentData().toString();
    r.schedule = m_schedule->currentText();
    r.snrShift = m_snrShift->value();
    r.prediction = m_prediction->currentData().toString();
    r.steps = m_steps->value();
    r.batch = m_batch->value();
    r.lr = m_lr->value();
    r.device = m_device->currentData().toString();
    r.seed = quint64(m_seed->value());
    r.sampleEvery = m_sampleEvery->value();
    return r;
}

void TrainingView::setRequest(const TrainingRequest& r) {
    m_family->setCurrentIndex(std::max(0, m_family->findData(r.family)));
    if (r.dataset.startsWith(QStringLiteral("images:"))) {
        m_dataset->setCurrentIndex(1);
        m_folder->setText(r.dataset.mid(7));
    } else {
        m_dataset->setCurrentIndex(std::max(0, m_dataset->findData(r.dataset)));
    }
    m_imageSize->setValue(r.imageSize);
    m_channels->setCurrentIndex(std::max(0, m_channels->findData(r.channels)));
    m_size->setCurrentIndex(std::max(0, m_size->findData(r.sizePreset)));
    m_schedule->setCurrentIndex(std::max(0, m_schedule->findText(r.schedule)));
    m_snrShift->setValue(r.snrShift);
    m_prediction->setCurrentIndex(std::max(0, m_prediction->findData(r.prediction)));
    m_steps->setValue(int(std::min<qint64>(r.steps, m_steps->maximum())));
    m_batch->setValue(int(r.batch));
    m_lr->setValue(r.lr);
    m_device->setCurrentIndex(std::max(0, m_device->findData(r.device)));
    m_seed->setValue(int(r.seed));
    m_sampleEvery->setValue(r.sampleEvery);
}

QString TrainingView::statusText() const { return m_status->text(); }

QImage TrainingView::samples() const { return m_samples->image(); }

void TrainingView::start() {
    if (m_running) return;
    TrainingRequest r = request();
    if (r.dataset == QStringLiteral("images:")) {
        m_status->setText(tr("Choose an image folder first"));
        return;
    }
    const QString data = r.dataset.startsWith(QStringLiteral("images:")) ? QFileInfo(r.dataset.mid(7)).fileName() : r.dataset;
    const QString title = r.family == QStringLiteral("gan")
                              ? tr("%1, GAN %2, %3 steps").arg(data, r.sizePreset).arg(r.steps)
                              : tr("%1, %2, %3 %4, %5 steps").arg(data, r.sizePreset, r.schedule, r.prediction).arg(r.steps);
    QString error;
    RunRecord run = m_history->create(QStringLiteral("training"), title, r.toJson(), r.seed, &error);
    if (run.id.isEmpty()) {
        m_status->setText(error);
        return;
    }
    m_run = run;
    r.outDir = run.folder;
    r.resume = false;
    m_run.parameters = r.toJson();
    m_history->save(m_run);
    m_steps_.clear();
    m_loss.clear();
    m_smooth.clear();
    m_dLoss.clear();
    setGanPlot(r.family == QStringLiteral("gan"));
    m_emaState = 0;
    m_emaCount = 0;
    m_samples->setImage(QImage());
    m_samples->setCaption(tr("EMA samples appear here while training"));
    replot();
    launch(r);
}

void TrainingView::launch(TrainingRequest r) {
    m_run.status = QStringLiteral("running");
    m_run.message.clear();
    m_history->save(m_run);
    Q_EMIT historyChanged();
    m_worker->setPaused(false);
    m_progress->setRange(0, int(std::min<qint64>(r.steps, INT_MAX)));
    m_progress->setFormat(QStringLiteral("%v / %m steps"));
    m_status->setText(tr("loading the data…"));
    setRunning(true);
    QMetaObject::invokeMethod(m_worker, "run", Qt::QueuedConnection, Q_ARG(dlab::ui::TrainingRequest, r));
}

void TrainingView::togglePause() {
    if (!m_running) return;
    const bool paused = !m_worker->paused();
    m_worker->setPaused(paused);
    m_pause->setText(paused ? tr("Continue") : tr("Pause"));
    m_progress->setFormat(paused ? tr("paused at %v / %m") : QStringLiteral("%v / %m steps"));
}

void TrainingView::stop() {
    if (!m_running) return;
    m_status->setText(tr("stopping (saving a checkpoint)…"));
    m_worker->setPaused(false);
    m_worker->requestStop();
}

void TrainingView::resume() {
    if (m_running || m_run.id.isEmpty()) return;
    resumeRun(m_run);
}

void TrainingView::resumeRun(const RunRecord& record) {
    if (m_running) return;
    if (!QFileInfo::exists(record.folder + QStringLiteral("/checkpoint.safetensors"))) {
        m_status->setText(tr("Cannot resume %1: its checkpoint was deleted").arg(record.title));
        return;
    }
    QStringList problems;
    TrainingRequest r = TrainingRequest::fromJson(record.parameters, &problems);
    if (!problems.isEmpty()) {
        m_status->setText(tr("Cannot resume %1: its run.json has values out of range: %2").arg(record.title, problems.join(QStringLiteral("; "))));
        return;
    }
    r.outDir = record.folder;
    r.resume = true;
    if (record.id != m_run.id) {
        m_samples->setImage(QImage());
        setRequest(r);
    }
    m_run = record;
    loadLossLog(record.folder);
    launch(r);
}

void TrainingView::rerun(const RunRecord& record) {
    if (m_running) return;
    QStringList problems;
    setRequest(TrainingRequest::fromJson(record.parameters, &problems));
    if (!problems.isEmpty()) {
        m_status->setText(tr("Cannot run %1 again: its run.json has values out of range: %2").arg(record.title, problems.join(QStringLiteral("; "))));
        return;
    }
    start();
}

void TrainingView::pushLoss(double step, double loss) {
    constexpr double beta = 0.8;
    m_emaState = beta * m_emaState + (1 - beta) * loss;
    ++m_emaCount;
    m_steps_ << step;
    m_loss << loss;
    m_smooth << m_emaState / (1 - std::pow(beta, m_emaCount));
}

void TrainingView::loadLossLog(const QString& dir) {
    m_steps_.clear();
    m_loss.clear();
    m_smooth.clear();
    m_emaState = 0;
    m_emaCount = 0;
    m_dLoss.clear();
    QFile f(dir + QStringLiteral("/loss.csv"));
    if (f.open(QIODevice::ReadOnly)) {
        QTextStream in(&f);
        // A GAN's log holds both losses: step,d_loss,g_loss,...
        const bool gan = in.readLine().startsWith(QStringLiteral("step,d_loss,g_loss"));
        setGanPlot(gan);
        while (!in.atEnd()) {
            const QStringList cols = in.readLine().split(QLatin1Char(','));
            if (gan && cols.size() >= 3) {
                m_dLoss << cols[1].toDouble();
                pushLoss(cols[0].toDouble(), cols[2].toDouble());
            } else if (!gan && cols.size() >= 2) {
                pushLoss(cols[0].toDouble(), cols[1].toDouble());
            }
        }
    }
    replot();
}

void TrainingView::onProgress(const TrainingUpdate& u) {
    if (!m_running) return;
    if (!std::isfinite(u.loss)) return;
    if (std::isfinite(u.dLoss)) m_dLoss << u.dLoss;
    pushLoss(double(u.step), u.loss);
    const double smooth = m_smooth.back();
    if (std::isfinite(u.dLoss)) {
        m_progress->setValue(int(u.step));
        if (!m_worker->paused()) m_progress->setFormat(tr("%v / %m steps · ETA %1").arg(formatEta(u.etaS)));
        m_stats->setText(tr("step %1 · D loss %2 · G loss %3 · %4 img/s · ETA %5")
                             .arg(u.step).arg(u.dLoss, 0, 'f', 4).arg(u.loss, 0, 'f', 4).arg(u.imagesPerS, 0, 'f', 0)
                             .arg(formatEta(u.etaS)));
        replot();
        return;
    }
    m_progress->setValue(int(u.step));
    if (!m_worker->paused()) m_progress->setFormat(tr("%v / %m steps · ETA %1").arg(formatEta(u.etaS)));
    m_stats->setText(tr("step %1 · loss %2 (smoothed %3) · lr %4 · %5 img/s · ETA %6")
                         .arg(u.step)
                         .arg(u.loss, 0, 'f', 4)
                         .arg(smooth, 0, 'f', 4)
                         .arg(u.lr, 0, 'e', 2)
                         .arg(u.imagesPerS, 0, 'f', 0)
                         .arg(formatEta(u.etaS)));
    replot();
}

void TrainingView::onSamples(const QImage& grid, qint64 step) {
    m_samples->setImage(grid);
    m_samples->setCaption(tr("EMA samples at step %1 (same noise each time)").arg(step));
}

void TrainingView::onFinished(const TrainingOutcome& o) {
    setRunning(false);
    m_status->setText(o.message);
    m_run.message = o.message;
    if (!o.ok) {
        m_run.status = QStringLiteral("failed");
        m_progress->setFormat(tr("failed"));
    } else {
        m_run.status = o.stopped ? QStringLiteral("stopped") : QStringLiteral("finished");
        m_progress->setFormat(o.stopped ? tr("stopped at %v / %m") : tr("done: %v steps"));
        QStringList outputs{QStringLiteral("model.safetensors"), QStringLiteral("checkpoint.safetensors"),
                            QStringLiteral("loss.csv")};
        if (!m_samples->image().isNull() && m_samples->image().save(m_run.folder + QStringLiteral("/samples.png")))
            outputs << QStringLiteral("samples.png");
        m_run.outputs = outputs;
    }
    QString error;
    if (!m_history->save(m_run, &error)) m_status->setText(o.message + QLatin1Char('\n') + error);
    m_open->setEnabled(o.ok);
    m_resume->setEnabled(o.ok && o.stopped);
    Q_EMIT historyChanged();
    // A GAN has no chain to show in the Reverse tab: `diffusionlab-cli sample --model PATH` samples it.
    const bool gan = m_run.parameters.value(QStringLiteral("family")).toString() == QStringLiteral("gan");
    if (o.ok && !gan) Q_EMIT modelTrained(m_run.title, o.modelPath);
    if (gan) m_open->setEnabled(false);
    Q_EMIT finished(o);
}

void TrainingView::setRunning(bool running) {
    m_running = running;
    m_start->setEnabled(!running);
    m_pause->setEnabled(running);
    m_pause->setText(tr("Pause"));
    m_stop->setEnabled(running);
    m_resume->setEnabled(!running && m_run.status == QStringLiteral("stopped"));
    if (running) m_open->setEnabled(false);
}

void TrainingView::setGanPlot(bool gan) {
    m_ganPlot = gan;
    m_plot->graph(0)->setName(gan ? tr("discriminator loss") : tr("loss (batch)"));
    m_plot->graph(1)->setName(gan ? tr("generator loss") : tr("smoothed"));
    // Hinge losses cross zero (the generator's is -E[D(G(z))]): a linear axis for a GAN.
    m_plot->yAxis->setScaleType(gan ? QCPAxis::stLinear : QCPAxis::stLogarithmic);
    if (gan) m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
    else m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
}

void TrainingView::replot() {
    if (m_ganPlot) {
        m_plot->graph(0)->setData(m_steps_.mid(0, m_dLoss.size()), m_dLoss, true);
        m_plot->graph(1)->setData(m_steps_, m_loss, true);
        if (!m_loss.isEmpty()) {
            double lo = 0, hi = 0;
            for (const QVector<double>* v : {&m_loss, &m_dLoss})
                for (double x : *v) {
                    lo = std::min(lo, x);
                    hi = std::max(hi, x);
                }
            m_plot->xAxis->setRange(0, std::max(m_steps_.back(), 1.0));
            m_plot->yAxis->setRange(lo - 0.1 * (hi - lo) - 0.1, hi + 0.1 * (hi - lo) + 0.1);
        }
        m_plot->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    m_plot->graph(0)->setData(m_steps_, m_loss, true);
    m_plot->graph(1)->setData(m_steps_, m_smooth, true);
    if (!m_loss.isEmpty()) {
        double lo = m_loss[0], hi = m_loss[0];
        for (double v : m_loss) {
            if (v > 0) lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        m_plot->xAxis->setRange(0, std::max(m_steps_.back(), 1.0));
        m_plot->yAxis->setRange(std::max(lo * 0.8, 1e-6), hi * 1.25);
    }
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace dlab::ui
