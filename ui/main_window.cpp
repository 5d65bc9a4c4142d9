#include "ui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>

#include "ui/schedule_view.h"

namespace dlab::ui {

MainWindow::MainWindow(const MainWindowOptions& options, QWidget* parent) : QMainWindow(parent) {
    setWindowTitle(tr("DiffusionLab"));
    m_tabs = new QTabWidget;
    m_schedules = new ScheduleView;
    m_tabs->addTab(m_schedules, tr("Schedules"));
    setCentralWidget(m_tabs);

    auto* fileMenu = menuBar()->addMenu(tr("&File"));
    auto* quit = fileMenu->addAction(tr("&Quit"));
    quit->setShortcut(QKeySequence::Quit);
    connect(quit, &QAction::triggered, this, &QWidget::close);
    auto* helpMenu = menuBar()->addMenu(tr("&Help"));
    auto* about = helpMenu->addAction(tr("&About DiffusionLab"));
    connect(about, &QAction::triggered, this, [this, options] {
        QMessageBox::about(this, tr("About DiffusionLab"),
                           tr("<b>DiffusionLab %1</b><p>Train, sample and see diffusion models."
                              "<p>LibTorch %2, Qt %3")
                               .arg(QApplication::applicationVersion(), options.torchVersion,
                                    QString::fromLatin1(qVersion())));
    });

    statusBar()->addPermanentWidget(new QLabel(
        tr("LibTorch %1 · %2 · %3 threads").arg(options.torchVersion, options.deviceLabel)
            .arg(options.threads)));
    statusBar()->showMessage(tr("Ready"), 3000);
    resize(1100, 640);
    restoreState();
}

void MainWindow::setCurrentTab(int index) {
    if (index >= 0 && index < m_tabs->count()) m_tabs->setCurrentIndex(index);
}

void MainWindow::restoreState() {
    QSettings settings;
    if (settings.contains(QStringLiteral("window/geometry")))
        restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
    m_tabs->setCurrentIndex(settings.value(QStringLiteral("window/tab"), 0).toInt());
}

void MainWindow::closeEvent(QCloseEvent* event) {
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/tab"), m_tabs->currentIndex());
    event->accept();
}

}  // namespace dlab::ui
