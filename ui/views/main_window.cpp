#include "ui/common/save_dialog.h"
#include "ui/views/main_window.h"

#include <QAction>
#include <QActionGroup>
#include <QFileDialog>
#include <QApplication>
#include <QCloseEvent>
#include <QFileInfo>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>
#include <QWhatsThis>

#include <ATen/ATen.h>

#include "imaging/image_io.h"
#include "core/io/model_catalog.h"
#include "core/networks/fused_ops.h"
#include "ui/common/checked_values.h"
#include "ui/views/batch_view.h"
#include "ui/views/explorer_view.h"
#include "core/runtime/runtime.h"
#include "ui/views/forward_view.h"
#include "ui/views/history_view.h"
#include "ui/views/lecture_tour.h"
#include "ui/views/likelihood_view.h"
#include "ui/views/sds_view.h"
#include "ui/views/video_view.h"
#include "ui/views/models_view.h"
#include "ui/views/training_view.h"
#include "ui/views/reverse_view.h"
#include "ui/views/schedule_view.h"
#include "ui/views/toy_view.h"

namespace dlab::ui {

MainWindow::MainWindow(const MainWindowOptions& options, QWidget* parent) : QMainWindow(parent), m_options(options) {
    setWindowTitle(tr("DiffusionLab"));
    m_tabs = new QTabWidget;
    m_reverse = new ReverseView(options.deviceLabel.toLower());
    m_schedules = new ScheduleView;
    m_tabs->addTab(m_reverse, tr("Reverse chain"));
    m_forward = new ForwardView(m_reverse->worker());
    m_tabs->addTab(m_forward, tr("Forward process"));
    m_batch = new BatchView(m_reverse->worker());
    m_tabs->addTab(m_batch, tr("Batch"));
    connect(m_reverse, &ReverseView::modelReady, m_batch, &BatchView::setModelInfo);
    m_toy = new ToyView(m_reverse->worker());
    m_tabs->addTab(m_toy, tr("2-D lab"));
    m_tabs->addTab(m_schedules, tr("Schedules"));
    m_explorer = new ExplorerView(m_reverse->worker());
    m_tabs->addTab(m_explorer, tr("Guidance explorer"));
    connect(m_reverse, &ReverseView::modelReady, m_explorer, &ExplorerView::setModelInfo);
    connect(m_reverse, &ReverseView::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m, 8000); });
    connect(m_reverse, &ReverseView::modelReady, this, [this](const ModelInfo& info) { m_loadedModel = info.path; });

    // Training and the run history (tabs 6 and 7).
    m_history = std::make_unique<RunHistory>(RunHistory::defaultRoot());
    m_training = new TrainingView(m_history.get(), select_device("cuda").ok());
    m_tabs->addTab(m_training, tr("Training"));
    m_historyView = new HistoryView(m_history.get());
    m_tabs->addTab(m_historyView, tr("History"));
    // Tab 8: one big step or many small ones (GAN, VAE prior and diffusion; the trilemma).
    m_models = new ModelsView(m_reverse->worker());
    m_tabs->addTab(m_models, tr("Generative models"));
    connect(m_reverse, &ReverseView::modelReady, m_models, &ModelsView::setModelInfo);
    // Tab 9: the variational bound term by term and the noise loss against t.
    m_likelihood = new LikelihoodView(m_reverse->worker(), select_device("cuda").ok());
    m_tabs->addTab(m_likelihood, tr("Loss and likelihood"));
    connect(m_reverse, &ReverseView::modelReady, m_likelihood, &LikelihoodView::setModelInfo);
    m_sds = new SdsView(m_reverse->worker(), options.deviceLabel.toLower());
    m_tabs->addTab(m_sds, tr("Score distillation"));
    connect(m_sds, &SdsView::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m, 8000); });
    m_video = new VideoView(m_reverse->worker(), options.deviceLabel.toLower());
    m_tabs->addTab(m_video, tr("Video"));
    connect(m_video, &VideoView::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m, 8000); });
    m_batch->setHistory(m_history.get());
    m_explorer->setHistory(m_history.get());
    connect(m_training, &TrainingView::modelTrained, m_reverse, &ReverseView::addModel);
    connect(m_training, &TrainingView::openModel, this, [this](const QString& name, const QString& path) {
        m_reverse->useModel(name, path);
        m_tabs->setCurrentWidget(m_reverse);
    });
    for (auto* sender : {static_cast<QObject*>(m_training), static_cast<QObject*>(m_batch), static_cast<QObject*>(m_explorer)})
        connect(sender, SIGNAL(historyChanged()), m_historyView, SLOT(refresh()));
    connect(m_historyView, &HistoryView::openRun, this, &MainWindow::openRun);
    connect(m_historyView, &HistoryView::rerunRun, this, &MainWindow::rerunRun);
    connect(m_historyView, &HistoryView::resumeRun, this, [this](const RunRecord& run) {
        m_tabs->setCurrentWidget(m_training);
        m_training->resumeRun(run);
    });
    // Models of earlier training runs are in the lab's model list (newest first, up to 12).
    int added = 0;
    for (const RunRecord& run : m_history->list()) {
        if (run.kind != QStringLiteral("training") || added >= 12) continue;
        const QString path = run.folder + QStringLiteral("/model.safetensors");
        if ((run.status == QStringLiteral("finished") || run.status == QStringLiteral("stopped")) && QFileInfo::exists(path)) {
            m_reverse->addModel(run.title, path);
            ++added;
        }
    }
    setCentralWidget(m_tabs);

    auto* fileMenu = menuBar()->addMenu(tr("&File"));
    auto* exportAct = fileMenu->addAction(tr("&Export image…"));
    exportAct->setShortcut(QKeySequence::Save);
    connect(exportAct, &QAction::triggered, this, &MainWindow::exportImage);
    auto* video = fileMenu->addAction(tr("Export chain as &video…"));
    connect(video, &QAction::triggered, this, [this] {
        const QString path = askExportPath(this, tr("Export chain"), QStringLiteral("chain.mp4"), tr("MP4 video (*.mp4)"));
        if (path.isEmpty()) return;
        const QString error = m_reverse->exportChainVideo(path);
        if (!error.isEmpty()) QMessageBox::warning(this, tr("Export failed"), error);
        else statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
    });
    auto* quit = fileMenu->addAction(tr("&Quit"));
    quit->setShortcut(QKeySequence::Quit);
    connect(quit, &QAction::triggered, this, &QWidget::close);
    // Settings: the precision of CUDA inference (fp16 kept the quality model's FID on an H200 and
    // ran large batches 1.5-1.9x faster; docs/eval/half-h200.log). A CPU run stays float32.
    auto* settingsMenu = menuBar()->addMenu(tr("&Settings"));
    auto* precisionMenu = settingsMenu->addMenu(tr("Inference &precision"));
    precisionMenu->setToolTipsVisible(true);
    auto* precisionGroup = new QActionGroup(this);
    const bool cuda = !options.precision.isEmpty();
    const struct { const char* name; QString label, tip; } precisions[] = {
        {"fp32", tr("FP32 (float32)"), tr("Full precision: the same samples on every run")},
        {"fp16", tr("FP16 (half)"), tr("Half the memory traffic and twice the tensor-core rate: same FID, "
                                       "1.5-1.9x faster on large batches (measured on an H200)")},
        {"bf16", tr("BF16 (bfloat16)"), tr("bfloat16: float32's range, fewer mantissa bits")},
    };
    if (!cuda) precisionMenu->addAction(tr("(CUDA devices only: this run is on the CPU, in float32)"))->setEnabled(false);
    for (const auto& p : precisions) {
        const QString name = QString::fromLatin1(p.name);
        auto* act = precisionMenu->addAction(p.label);
        act->setObjectName(QStringLiteral("precision-") + name);
        act->setCheckable(true);
        act->setChecked(cuda ? options.precision == name : name == QStringLiteral("fp32"));
        act->setEnabled(cuda);
        act->setToolTip(cuda ? p.tip : tr("CUDA devices only: this run is on the CPU, in float32"));
        precisionGroup->addAction(act);
        connect(act, &QAction::triggered, this, [this, name] { setPrecision(name); });
    }
    auto* helpMenu = menuBar()->addMenu(tr("&Help"));
    m_tour = new LectureTour(this);
    addDockWidget(Qt::RightDockWidgetArea, m_tour);
    m_tour->hide();
    auto* tourAct = helpMenu->addAction(tr("&Lecture tour"));
    tourAct->setShortcut(QKeySequence::HelpContents);
    tourAct->setToolTip(tr("The lecture in order: each stop opens a tab, runs what it shows and explains it"));
    connect(tourAct, &QAction::triggered, m_tour, &LectureTour::start);
    auto* whatsThis = helpMenu->addAction(tr("What is &this?"));
    whatsThis->setShortcut(QKeySequence::WhatsThis);
    connect(whatsThis, &QAction::triggered, this, [] { QWhatsThis::enterWhatsThisMode(); });
    auto* about = helpMenu->addAction(tr("&About DiffusionLab"));
    connect(about, &QAction::triggered, this, [this, options] {
        QMessageBox::about(this, tr("About DiffusionLab"),
                           tr("<b>DiffusionLab %1</b><p>Train, sample and see diffusion models."
                              "<p>LibTorch %2, Qt %3")
                               .arg(QApplication::applicationVersion(), options.torchVersion,
                                    QString::fromLatin1(qVersion())));
    });

    m_deviceStatus = new QLabel(deviceStatusText());
    m_deviceStatus->setObjectName(QStringLiteral("deviceStatus"));
    statusBar()->addPermanentWidget(m_deviceStatus);
    statusBar()->showMessage(tr("Ready"), 3000);
    // 1280x800 at the first start (smaller screens: what is available); the smallest size the
    // window allows keeps every tab readable (checked by screenshots in the tests).
    setMinimumSize(1024, 640);
    resize(1280, 800);
    restoreState();
    if (options.firstStart) {
        // The first thing a new user sees: noise turning into garments, a few classes, then it stops.
        auto* once = new QObject(this);
        connect(m_reverse, &ReverseView::modelReady, once, [this, once](const ModelInfo& info) {
            once->deleteLater();
            if (info.classNames.size() >= 10) m_reverse->startDemo({0, 7, 8, 1});
            else if (!info.classNames.isEmpty()) m_reverse->startDemo({0});
            else m_reverse->startDemo({-1});
        }, Qt::QueuedConnection);
        QSettings().setValue(QStringLiteral("firstStartShown"), true);
    }
}

void MainWindow::withBundledModel(const QString& name, std::function<void()> then) {
    const auto path = resolve_model(name.toStdString());
    if (!path) {
        statusBar()->showMessage(tr("The bundled model %1 is missing: %2").arg(name, QString::fromStdString(path.error())), 8000);
        return;
    }
    withModel(QString::fromStdString(path.value()), std::move(then));
}

int MainWindow::currentTab() const { return m_tabs->currentIndex(); }

QString MainWindow::deviceStatusText() const {
    const QString device = m_options.precision.isEmpty() ? m_options.deviceLabel
                                                         : m_options.deviceLabel + QLatin1Char(' ') + m_options.precision.toUpper();
    return tr("LibTorch %1 · %2 · %3 threads").arg(m_options.torchVersion, device).arg(m_options.threads);
}

void MainWindow::setPrecision(const QString& name) {
    const auto type = parse_precision(name.toStdString());
    if (m_options.precision.isEmpty() || !type || name == m_options.precision) return;
    set_inference_precision(*type);
    m_options.precision = name;
    QSettings().setValue(QStringLiteral("inferencePrecision"), name);
    m_deviceStatus->setText(deviceStatusText());
    if (auto* act = findChild<QAction*>(QStringLiteral("precision-") + name)) act->setChecked(true);
    // The weights are converted when a model loads: the lab's model loads again.
    if (!m_loadedModel.isEmpty()) m_reverse->loadModel(m_loadedModel);
    statusBar()->showMessage(tr("Inference precision %1: the model reloads in it").arg(name.toUpper()), 6000);
}

void MainWindow::setCurrentTab(int index) {
    if (index >= 0 && index < m_tabs->count()) m_tabs->setCurrentIndex(index);
}

void MainWindow::restoreState() {
    QSettings settings;
    if (settings.contains(QStringLiteral("window/geometry")))
        restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
    m_tabs->setCurrentIndex(int(checkedInt(settingValue(settings, QStringLiteral("window/tab")), QString(), 0, m_tabs->count() - 1, 0, nullptr)));
}

void MainWindow::exportImage() {
    const bool batch = m_tabs->currentWidget() == m_batch;
    const QImage image = batch ? m_batch->grid() : m_reverse->currentImage();
    if (image.isNull()) {
        statusBar()->showMessage(tr("Nothing to export yet: run a chain first"), 5000);
        return;
    }
    const QString path = askExportPath(this, tr("Export image"), QStringLiteral("sample.png"), tr("PNG (*.png)"));
    if (path.isEmpty()) return;
    // Upscaled 8x (nearest) so the 28x28 sample is visible; parameters in a tEXt chunk.
    const QImage big = image.convertToFormat(QImage::Format_Grayscale8).scaled(image.size() * (batch ? 3 : 8));
    const at::Tensor grey = at::from_blob(const_cast<uchar*>(big.constBits()), {1, big.height(), big.width()},
                                          {0, big.bytesPerLine(), 1}, at::kByte)
                                .to(at::kFloat)
                                .div_(255.0);
    auto st = imaging::write_png(path.toStdString(), grey, {{"parameters", (batch ? m_batch->parameters() : m_reverse->currentParameters()).toStdString()}});
    if (!st) QMessageBox::warning(this, tr("Export failed"), QString::fromStdString(st.error()));
    else statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
}

void MainWindow::withModel(const QString& modelPath, std::function<void()> then) {
    if (modelPath.isEmpty() || modelPath == m_loadedModel) {
        then();
        return;
    }
    if (!QFileInfo::exists(modelPath)) {
        statusBar()->showMessage(tr("The model of this run was deleted: %1").arg(modelPath), 8000);
        return;
    }
    // Called once this model is ready (a model still loading from before is not it).
    auto* once = new QObject(this);
    connect(m_reverse, &ReverseView::modelReady, once, [once, then, modelPath](const ModelInfo& info) {
        if (QFileInfo(info.path) != QFileInfo(modelPath)) return;
        once->deleteLater();
        then();
    }, Qt::QueuedConnection);
    m_reverse->useModel(QFileInfo(modelPath).baseName(), modelPath);
}

void MainWindow::openRun(const RunRecord& run) {
    if (run.kind == QStringLiteral("training")) {
        const QString path = run.folder + QStringLiteral("/model.safetensors");
        if (!QFileInfo::exists(path)) {
            statusBar()->showMessage(tr("The model file of this run was deleted"), 8000);
            return;
        }
        m_reverse->useModel(run.title, path);
        m_tabs->setCurrentWidget(m_reverse);
    } else if (run.kind == QStringLiteral("samples")) {
        QImage grid;
        if (!grid.load(RunHistory::outputPath(run, QStringLiteral("grid.png")))) {
            statusBar()->showMessage(tr("The grid of this run was deleted"), 8000);
            return;
        }
        m_batch->showResult(grid, run.title);
        m_tabs->setCurrentWidget(m_batch);
    } else if (run.kind == QStringLiteral("sweep")) {
        const QString error = m_explorer->openRecord(run);
        if (!error.isEmpty()) {
            statusBar()->showMessage(error, 8000);
            return;
        }
        m_tabs->setCurrentWidget(m_explorer);
    }
}

void MainWindow::rerunRun(const RunRecord& run) {
    const QString model = run.parameters.value(QStringLiteral("model")).toString();
    if (run.kind == QStringLiteral("training")) {
        m_tabs->setCurrentWidget(m_training);
        m_training->rerun(run);
    } else if (run.kind == QStringLiteral("samples")) {
        m_tabs->setCurrentWidget(m_batch);
        withModel(model, [this, p = run.parameters] { m_batch->runWith(p); });
    } else if (run.kind == QStringLiteral("sweep")) {
        m_tabs->setCurrentWidget(m_explorer);
        withModel(model, [this, p = run.parameters] { m_explorer->runRecorded(p); });
    }
}

void MainWindow::closeEvent(QCloseEvent* event) {
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/tab"), m_tabs->currentIndex());
    event->accept();
}

}  // namespace dlab::ui
