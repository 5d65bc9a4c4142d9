// The first start, the lecture tour and the readability of every tab: the demonstration chain
// runs and stops; each tour stop opens its tab and its job shows output; every tab's screenshot at
// 1280x800 and at the window's smallest size, with every plot checked for overlapping tick labels
// and axis titles longer than their axis.
#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include <QDir>
#include <QProcess>
#include <QFontMetrics>
#include <QSettings>
#include <QSignalSpy>
#include <QComboBox>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QTabWidget>
#include <QTemporaryDir>

#include "ui/common/qcp.h"
#include "ui/signal_wait.h"
#include "core/io/manifest.h"
#include "core/io/model_catalog.h"
#include "ui/views/lecture_tour.h"
#include "ui/views/likelihood_view.h"
#include "ui/views/main_window.h"
#include "ui/views/models_view.h"
#include "ui/views/reverse_view.h"

using namespace dlab::ui;

namespace {

MainWindowOptions options(bool firstStart = false) {
    MainWindowOptions o{QStringLiteral("CPU"), 2, QStringLiteral("test")};
    o.firstStart = firstStart;
    return o;
}

// Problems of one axis as drawn: tick labels that overlap their neighbours, a title longer than the
// axis, an axis squeezed below 60 pixels.
QStringList axisProblems(QCPAxis* axis, const QString& where) {
    QStringList out;
    if (!axis->visible()) return out;
    const bool horizontal = axis->orientation() == Qt::Horizontal;
    const QRect r = axis->axisRect()->rect();
    const int length = horizontal ? r.width() : r.height();
    if (length < 60) out << QStringLiteral("%1: the plot area is %2 px long").arg(where).arg(length);
    const QFontMetrics tickFont(axis->tickLabelFont());
    const QVector<double> ticks = axis->tickVector();
    const QVector<QString> labels = axis->tickVectorLabels();
    // The labels in screen order (a reversed axis runs the other way).
    std::vector<std::pair<double, int>> shown;
    for (int i = 0; i < ticks.size() && i < labels.size(); ++i) {
        const double pixel = axis->coordToPixel(ticks[i]);
        if (pixel < (horizontal ? r.left() : r.top()) - 1 || pixel > (horizontal ? r.right() : r.bottom()) + 1) continue;
        shown.emplace_back(pixel, i);
    }
    std::sort(shown.begin(), shown.end());
    double previousEnd = -1e9;
    for (const auto& [pixel, i] : shown) {
        // Exponent labels ("1·10^4") draw in two lines: their width is at most the text's.
        const double half = horizontal ? tickFont.horizontalAdvance(labels[i]) / 2.0 : tickFont.height() / 2.0;
        const double start = pixel - half, end = pixel + half;
        if (start < previousEnd - 1) out << QStringLiteral("%1: tick labels '%2' and its neighbour overlap").arg(where, labels[i]);
        previousEnd = std::max(previousEnd, end);
    }
    if (!axis->label().isEmpty()) {
        const int title = QFontMetrics(axis->labelFont()).horizontalAdvance(axis->label());
        if (title > length + 4) out << QStringLiteral("%1: the title '%2' (%3 px) is longer than the axis (%4 px)").arg(where, axis->label()).arg(title).arg(length);
    }
    return out;
}

QStringList plotProblems(QWidget* root, const QString& where) {
    QStringList out;
    for (QCustomPlot* plot : root->findChildren<QCustomPlot*>()) {
        if (!plot->isVisible()) continue;
        plot->replot(QCustomPlot::rpImmediateRefresh);
        for (QCPAxisRect* rect : plot->axisRects())
            for (QCPAxis* axis : rect->axes())
                out << axisProblems(axis, QStringLiteral("%1, plot '%2'").arg(where, axis->label().isEmpty() ? QStringLiteral("?") : axis->label()));
    }
    return out;
}

}  // namespace

class TestTour : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        qputenv("DLAB_DATA_DIR", m_data.path().toUtf8());
        QSettings().clear();
    }

    void firstStartChainRunsAndStops() {
        MainWindow w(options(true));
        w.show();
        QSignalSpy finished(w.reverseView(), &ReverseView::chainFinished);
        QSignalSpy demo(w.reverseView(), &ReverseView::demoFinished);
        QVERIFY(waitCount(demo, 1, 60000));
        QCOMPARE(finished.size(), 4);  // four classes, one chain each
        QVERIFY(!w.reverseView()->isRunning());
        QVERIFY(!w.reverseView()->demoRunning());
        QCOMPARE(w.reverseView()->frameCount(), 50);
        QVERIFY(QSettings().value(QStringLiteral("firstStartShown")).toBool());
        // The user takes over at once: pressing Play ends a running demonstration.
        MainWindow again(options(true));
        QSignalSpy first(again.reverseView(), &ReverseView::chainFinished);
        QVERIFY(waitCount(first, 1, 30000));
        again.reverseView()->playPause();  // a new chain of the user's
        QVERIFY(!again.reverseView()->demoRunning());
    }

    void aRecommendedSamplingIsOffered() {
        // The quality tier's manifest recommends a sampling (DPM-Solver++(2M) 50, linspace, s = 1):
        // loading it shows a button that sets exactly that; a model without one hides the button.
        MainWindow w(options());
        ReverseView* v = w.reverseView();
        QSignalSpy ready(v, &ReverseView::modelReady);
        QVERIFY(waitCount(ready, 1, 30000));  // the first model
        auto* button = v->findChild<QPushButton*>(QStringLiteral("useRecommended"));
        auto* steps = v->findChild<QSpinBox*>(QStringLiteral("steps"));
        auto* sampler = v->findChild<QComboBox*>(QStringLiteral("sampler"));
        auto* guidance = v->findChild<QSlider*>(QStringLiteral("guidance"));
        auto* spacing = v->findChild<QComboBox*>(QStringLiteral("spacing"));
        QVERIFY(button && steps && sampler && guidance && spacing);
        const auto qpath = dlab::resolve_model("fashion-mnist-quality");
        QVERIFY2(qpath.ok(), qpath.error().c_str());
        const auto manifest = dlab::read_manifest(qpath.value());
        QVERIFY2(manifest && manifest->recommended, manifest ? "no recommendation" : manifest.error().c_str());
        const dlab::RecommendedSampling r = *manifest->recommended;
        QVERIFY(r.sampler != "ddpm" && r.steps != 37 && !r.spacing.empty() && r.spacing != "leading");
        for (const auto& [name, expectOffer] : {std::pair{"fashion-mnist-quality", true}, std::pair{"fashion-mnist-live", false}}) {
            const auto path = dlab::resolve_model(name);
            QVERIFY2(path.ok(), path.error().c_str());
            const int before = ready.size();
            v->useModel(QString::fromLatin1(name), QString::fromStdString(path.value()));
            QVERIFY(waitCount(ready, before + 1, 30000));
            QCOMPARE(!button->isHidden(), expectOffer);
            if (expectOffer) {  // the Batch tab draws its grids with the recommendation too
                auto* batchSampler = w.findChild<QComboBox*>(QStringLiteral("batchSampler"));
                auto* batchSpacing = w.findChild<QComboBox*>(QStringLiteral("batchSpacing"));
                QVERIFY(batchSampler && batchSpacing);
                QCOMPARE(batchSampler->currentText(), QString::fromStdString(r.sampler));
                QCOMPARE(batchSpacing->currentText(), QString::fromStdString(r.spacing));
            }
            QVERIFY(!v->findChild<QComboBox*>(QStringLiteral("class"))->isHidden());  // the class row stays
            // Laid out on screen, no row is squeezed to nothing by the extra one.
            w.show();
            QTest::qWait(200);
            for (QWidget* field : std::initializer_list<QWidget*>{v->findChild<QComboBox*>(QStringLiteral("class")), steps, sampler, guidance, button})
                if (field->isVisible()) QVERIFY2(field->height() > 4, qPrintable(field->objectName()));
            steps->setValue(37);
            sampler->setCurrentIndex(sampler->findText(QStringLiteral("ddpm")));
            guidance->setValue(45);
            spacing->setCurrentIndex(spacing->findText(QStringLiteral("leading")));
            button->click();
            QCOMPARE(steps->value(), expectOffer ? int(r.steps) : 37);
            QCOMPARE(sampler->currentText(), expectOffer ? QString::fromStdString(r.sampler) : QStringLiteral("ddpm"));
            QCOMPARE(guidance->value(), expectOffer ? int(std::lround(r.guidance * 10)) : 45);
            QCOMPARE(spacing->currentText(), expectOffer ? QString::fromStdString(r.spacing) : QStringLiteral("leading"));
            // The chain the view asks for takes the spacing along.
            QVERIFY2(v->currentParameters().contains(QStringLiteral("spacing=") + spacing->currentText()),
                     qPrintable(v->currentParameters()));
        }
    }

    void tourStopsOpenTheirTabsAndProduce_data() {
        QTest::addColumn<int>("from");
        QTest::addColumn<int>("to");
        QTest::newRow("generative goal to 2-D") << 0 << 5;
        QTest::newRow("training to classifier-free") << 5 << 9;
        QTest::newRow("trade-off to the end") << 9 << 99;
    }

    void tourStopsOpenTheirTabsAndProduce() {
        QFETCH(int, from);
        QFETCH(int, to);
        MainWindow w(options());
        w.show();
        LectureTour* tour = w.tour();
        QVERIFY(tour->count() >= 12);
        tour->show();
        for (int i = from; i < std::min(to, tour->count()); ++i) {
            qInfo("stop %d: %s", i + 1, qPrintable(tour->stop(i).title));
            tour->go(i);
            QCOMPARE(tour->current(), i);
            QCOMPARE(w.currentTab(), tour->stop(i).tab);
            QVERIFY2(!tour->stop(i).html.isEmpty(), qPrintable(tour->stop(i).title));
            QTRY_VERIFY2_WITH_TIMEOUT(tour->produced(), qPrintable(tour->stop(i).title), 60000);
            QCOMPARE(w.currentTab(), tour->stop(i).tab);
        }
    }

    void generativeModelsShowsThreePanelsAndTheTrilemma() {
        QSettings().clear();  // the first start's pixel model, whatever an earlier test left chosen
        MainWindow w(options());
        w.show();
        QSignalSpy ready(w.reverseView(), &ReverseView::modelReady);
        QVERIFY(waitCount(ready, 1, 30000));
        ModelsView* v = w.modelsView();
        QVERIFY(v->trilemma().size() >= 10);  // the measured trilemma is bundled
        QSignalSpy finished(v, &ModelsView::finished);
        ThreadSpy failed(w.reverseView()->worker(), &SamplingWorker::failed);
        v->setDiffusionSteps(8);
        QCOMPARE(v->diffusionSteps(), 8);
        v->compare();
        QVERIFY2(waitCount(finished, 1, 60000), failed.isEmpty() ? "" : qPrintable(failed.first().first().toString()));
        // Three panels of the same size: a 4x4 grid of 28x28 images with 2-pixel padding each.
        for (int i = 0; i < 3; ++i) QCOMPARE(v->panelImage(i).size(), QSize(4 * 30 + 2, 4 * 30 + 2));
        v->interpolate();
        QVERIFY(waitCount(finished, 2, 60000));
        QCOMPARE(v->panelImage(0).size(), QSize(8 * 30 + 2, 30 + 2));  // a row of 8 frames
        QCOMPARE(v->panelImage(2).size(), QSize(8 * 30 + 2, 30 + 2));
    }

    // The likelihood tab: linear and cosine measured one after the other stay side by side, each
    // with a point per grid timestep and a total; the bundled exact curves are drawn beside them.
    void likelihoodViewComparesTwoSchedules() {
        QSettings().clear();
        MainWindow w(options());
        w.show();
        QSignalSpy ready(w.reverseView(), &ReverseView::modelReady);
        QVERIFY(waitCount(ready, 1, 30000));
        w.setCurrentTab(9);
        LikelihoodView* v = w.likelihoodView();
        QSignalSpy finished(v, &LikelihoodView::finished);
        ThreadSpy failed(w.reverseView()->worker(), &SamplingWorker::failed);
        int n = 0;
        for (const char* model : {"fashion-mnist-linear", "fashion-mnist-cosine"}) {
            v->configure(QString::fromLatin1(model), 24, 20);
            v->compute();
            QVERIFY2(waitCount(finished, ++n, 60000), failed.isEmpty() ? "" : qPrintable(failed.first().first().toString()));
        }
        QCOMPARE(v->curves().size(), 2);
        for (const LikelihoodCurve& c : v->curves()) {
            QVERIFY(c.complete);
            QCOMPARE(c.t.size(), 21);  // t = 0 and 20 ranges
            QCOMPARE(c.t.first(), 0.0);
            QVERIFY2(c.bpd > 0.5 && c.bpd < 8, qPrintable(QString::number(c.bpd)));
            QVERIFY(c.se > 0);
            QVERIFY(std::abs(c.prior + c.decoder + c.diffusion - c.bpd) < 1e-6 * c.bpd);
            QVERIFY(v->bundledCurves().contains(c.model));
            QCOMPARE(v->bundledCurves()[c.model].t.size(), 1000);  // the exact GPU curve
        }
        // Linear's last timesteps are nearly pure noise: its noise loss there is far below cosine's.
        const LikelihoodCurve& lin = v->curves()["fashion-mnist-linear"];
        const LikelihoodCurve& cos = v->curves()["fashion-mnist-cosine"];
        QCOMPARE(lin.t, cos.t);  // the same timesteps for both (same seed)
        QVERIFY(lin.mse.last() < cos.mse.last() || lin.mse[lin.mse.size() - 3] < cos.mse[cos.mse.size() - 3]);
        QVERIFY(v->summary().contains(QStringLiteral("bits/dim")));
        const QString dir = qEnvironmentVariable("DLAB_SCREENSHOT_DIR", QDir::currentPath() + QStringLiteral("/screenshots"));
        QDir().mkpath(dir);
        QTest::qWait(100);  // the summary label is laid out again
        QVERIFY(w.grab().save(dir + QStringLiteral("/likelihood.png")));
    }

    void everyTabIsReadableAtBothSizes() {
        const QString dir = qEnvironmentVariable("DLAB_SCREENSHOT_DIR", QDir::currentPath() + QStringLiteral("/screenshots"));
        QDir().mkpath(dir);
        MainWindow w(options());
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QStringList problems;
        for (const QSize size : {QSize(1280, 800), w.minimumSize()}) {
            w.resize(size);
            auto* tabs = w.findChild<QTabWidget*>();
            for (int i = 0; i < tabs->count(); ++i) {
                w.setCurrentTab(i);
                QTest::qWait(50);
                const QString name = QStringLiteral("tab%1-%2x%3").arg(i).arg(w.width()).arg(w.height());
                QVERIFY(w.grab().save(dir + QLatin1Char('/') + name + QStringLiteral(".png")));
                problems << plotProblems(tabs->widget(i), name);
            }
        }
        QVERIFY2(problems.isEmpty(), qPrintable(problems.join(QLatin1Char('\n'))));
    }

    // The application's command line: --help and --version answer on a terminal without a display,
    // no display is a sentence saying what to do (not Qt's plugin abort), a wrong option is named.
    void applicationCommandLineWithoutADisplay() {
        const QString app = qEnvironmentVariable("DLAB_GUI");
        if (app.isEmpty()) QSKIP("DLAB_GUI is not set (CTest sets it)");
        QProcessEnvironment bare = QProcessEnvironment::systemEnvironment();
        for (const char* var : {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}) bare.remove(QString::fromLatin1(var));
        auto run = [&](const QProcessEnvironment& env, const QStringList& args) {
            QProcess p;
            p.setProcessEnvironment(env);
            p.start(app, args);
            const bool done = p.waitForFinished(60000);
            return std::make_tuple(done ? p.exitCode() : -1, QString::fromUtf8(p.readAllStandardOutput()),
                                   QString::fromUtf8(p.readAllStandardError()));
        };
        auto [code, out, err] = run(bare, {QStringLiteral("--help")});
        QCOMPARE(code, 0);
        QVERIFY2(out.startsWith(QStringLiteral("Usage: diffusionlab")) && out.contains(QStringLiteral("--bench-stall")), qPrintable(out));
        std::tie(code, out, err) = run(bare, {QStringLiteral("--version")});
        QCOMPARE(code, 0);
        QVERIFY2(out.startsWith(QStringLiteral("diffusionlab ")), qPrintable(out));
        std::tie(code, out, err) = run(bare, {QStringLiteral("--tab"), QStringLiteral("1")});
        QCOMPARE(code, 2);
        QVERIFY2(err.contains(QStringLiteral("no display")) && err.contains(QStringLiteral("xvfb-run")), qPrintable(err));
        QProcessEnvironment offscreen = bare;
        offscreen.insert(QStringLiteral("QT_QPA_PLATFORM"), QStringLiteral("offscreen"));
        std::tie(code, out, err) = run(offscreen, {QStringLiteral("--tab"), QStringLiteral("1"), QStringLiteral("--bogus")});
        QCOMPARE(code, 2);
        QVERIFY2(err.contains(QStringLiteral("'--bogus'")), qPrintable(err));
        std::tie(code, out, err) = run(offscreen, {QStringLiteral("--tab"), QStringLiteral("99")});
        QCOMPARE(code, 2);
        QVERIFY2(err.contains(QStringLiteral("--tab")) && err.contains(QStringLiteral("99")) && err.contains(QStringLiteral("1 Forward process")), qPrintable(err));
    }

private:
    QTemporaryDir m_data;
};

QTEST_MAIN(TestTour)
#include "test_tour.moc"
