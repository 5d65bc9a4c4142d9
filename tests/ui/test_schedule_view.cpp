// The schedule view plots what core computes, and reacts to its controls.
#include <QtTest/QtTest>

#include <cmath>

#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QSettings>
#include <QSpinBox>

#include "core/forward/schedule.h"
#include "core/networks/fused_ops.h"
#include "ui/common/save_dialog.h"
#include "ui/views/forward_view.h"
#include "ui/views/main_window.h"
#include "ui/views/reverse_view.h"
#include "ui/views/schedule_view.h"
#include "ui/views/toy_view.h"
#include "ui/signal_wait.h"
#include "ui/worker_fixture.h"

using namespace dlab;

namespace {
// Pearson correlation of two grey images' pixels.
double correlation(const QImage& a, const QImage& b) {
    const QImage ga = a.convertToFormat(QImage::Format_Grayscale8), gb = b.convertToFormat(QImage::Format_Grayscale8);
    if (ga.size() != gb.size()) return 0;
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    const int n = ga.width() * ga.height();
    for (int y = 0; y < ga.height(); ++y)
        for (int x = 0; x < ga.width(); ++x) {
            const double u = ga.constScanLine(y)[x], v = gb.constScanLine(y)[x];
            sa += u; sb += v; saa += u * u; sbb += v * v; sab += u * v;
        }
    const double cov = sab / n - sa * sb / n / n, va = saa / n - sa * sa / n / n, vb = sbb / n - sb * sb / n / n;
    return cov / std::sqrt(va * vb + 1e-12);
}
}  // namespace

class TestScheduleView : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void plotsCoreSchedules() {
        ui::ScheduleView view;
        QCOMPARE(view.visibleScheduleCount(), 4);
        ScheduleConfig c;
        c.kind = ScheduleKind::Linear;
        c.timesteps = 1000;
        const auto s = NoiseSchedule::create(c).value();
        const QVector<double> curve = view.alphaBarCurve("linear");
        QCOMPARE(curve.size(), 1000);
        for (int t : {0, 321, 999}) QCOMPARE(curve[t], s.alpha_bar(t));
    }

    void reactsToControls() {
        ui::ScheduleView view;
        auto* spin = view.findChild<QSpinBox*>();
        QVERIFY(spin);
        spin->setValue(250);
        QCOMPARE(view.alphaBarCurve("cosine").size(), 250);
        QVERIFY(view.markedT() < 250);
        const auto boxes = view.findChildren<QCheckBox*>();
        for (auto* b : boxes)
            if (b->text() == "sigmoid") b->setChecked(false);
        QCOMPARE(view.visibleScheduleCount(), 3);
        QVERIFY(view.alphaBarCurve("sigmoid").isEmpty());
        view.setMarkedT(100);
        QCOMPARE(view.markedT(), 100);
    }

    void snrShiftRedrawsTheCurves() {
        // The SNR shift box redraws every curve with SNR x factor: abar' = f abar / (1 + (f - 1) abar).
        ui::ScheduleView view;
        const QVector<double> plain = view.alphaBarCurve("cosine");
        auto* box = view.findChild<QDoubleSpinBox*>();
        QVERIFY(box);
        box->setValue(4.0);
        const QVector<double> shifted = view.alphaBarCurve("cosine");
        QCOMPARE(shifted.size(), plain.size());
        for (int t : {10, 500, 900}) {
            const double want = 4 * plain[t] / (1 + 3 * plain[t]);
            QVERIFY2(std::abs(shifted[t] - want) < 1e-12, qPrintable(QString("t=%1: %2 vs %3").arg(t).arg(shifted[t]).arg(want)));
        }
        view.setSnrShift(1.0);
        QCOMPARE(box->value(), 1.0);
        QCOMPARE(view.alphaBarCurve("cosine")[500], plain[500]);
    }

    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }  // no user settings

    void exportNamesGetTheirSuffix() {
        QCOMPARE(ui::withDefaultSuffix(QStringLiteral("/home/u/sample"), QStringLiteral(".png")), QStringLiteral("/home/u/sample.png"));
        QCOMPARE(ui::withDefaultSuffix(QStringLiteral("/home/u/chain.mp4"), QStringLiteral(".mp4")), QStringLiteral("/home/u/chain.mp4"));
        // A name with another suffix is left alone: the writer refuses it with a message.
        QCOMPARE(ui::withDefaultSuffix(QStringLiteral("/home/u.d/clip.gif"), QStringLiteral(".mp4")), QStringLiteral("/home/u.d/clip.gif"));
        QCOMPARE(ui::withDefaultSuffix(QStringLiteral("/home/u.d/clip"), QStringLiteral(".mp4")), QStringLiteral("/home/u.d/clip.mp4"));
        QCOMPARE(ui::withDefaultSuffix(QString(), QStringLiteral(".png")), QString());  // cancelled
    }

    // The forward view computes nothing itself: each change is a request to the lab's worker and
    // the view shows the results as they arrive.
    void forwardViewNoisesImagesAndPoints() {
        WorkerFixture w;
        ui::ForwardView view(w.worker);
        view.show();
        QSignalSpy shown(&view, &ui::ForwardView::previewShown);
        auto settle = [&](int t) {  // until the result for t is on screen
            view.setT(t);
            QTRY_VERIFY_WITH_TIMEOUT(view.shownT() == t && !view.hasError(), 30000);
        };
        view.loadDatasetSample(7, 2);
        settle(0);
        QVERIFY(view.message().contains("Sneaker"));
        const QImage x0 = view.originalImage();
        QCOMPARE(x0.size(), QSize(28, 28));
        // Correlation of x_t with x_0: ~1 at t = 0; at t = 300 the linear schedule (A, abar 0.39)
        // has destroyed more of the image than the cosine one (B, abar 0.79); noise at t = 999.
        QVERIFY(correlation(view.noisedImage(0), x0) > 0.98);
        settle(300);
        const double a300 = correlation(view.noisedImage(0), x0), b300 = correlation(view.noisedImage(1), x0);
        qInfo("correlation with x0 at t = 300: linear %.3f, cosine %.3f", a300, b300);
        QVERIFY2(a300 < b300 && b300 > 0.7, qPrintable(QString("%1 %2").arg(a300).arg(b300)));
        settle(999);
        QVERIFY(std::abs(correlation(view.noisedImage(0), x0)) < 0.2);
        // A 2-D toy set is drawn as a point cloud.
        view.loadToySet(QStringLiteral("moons"));
        QTRY_VERIFY_WITH_TIMEOUT(view.message().contains("moons"), 30000);
        QCOMPARE(view.noisedImage(1).size(), QSize(220, 220));
        // Bad input is a message naming it; the last good x_0 stays and scrubbing goes on with it.
        const int before = shown.size();
        view.loadToySet(QStringLiteral("nope"));
        QVERIFY(waitCount(shown, before + 1, 30000));
        QVERIFY(view.hasError() && view.message().contains("nope"));
        QCOMPARE(view.noisedImage(1).size(), QSize(220, 220));
        settle(500);
        QVERIFY(view.message().contains("moons"));
        view.loadImageFile(QStringLiteral("/nonexistent.png"));
        QTRY_VERIFY_WITH_TIMEOUT(view.hasError(), 30000);
        QVERIFY(view.message().contains("/nonexistent.png"));
    }

    void forwardViewNoisesInLatentSpace() {
        WorkerFixture w;
        ui::ForwardView view(w.worker);
        view.loadDatasetSample(0, 0);
        QVERIFY(view.latentImage().isNull());
        view.setLatent(true);
        view.setT(0);
        QTRY_VERIFY_WITH_TIMEOUT(view.shownT() == 0 && !view.latentImage().isNull(), 30000);
        const QImage clean = view.latentImage();
        QCOMPARE(clean.size(), QSize(28, 28));  // decoded back to the image size
        // The autoencoder reconstructs x_0 at t = 0.
        QVERIFY(correlation(clean, view.originalImage()) > 0.95);
        view.setT(700);
        QTRY_VERIFY_WITH_TIMEOUT(view.shownT() == 700, 30000);
        QVERIFY(view.latentImage() != clean);
        view.setLatent(false);
        QVERIFY(view.latentImage().isNull());
    }

    void mainWindowOpens() {
        ui::MainWindowOptions o{QStringLiteral("CPU"), 2, QStringLiteral("test")};
        ui::MainWindow w(o);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY(w.reverseView()->isVisible());  // the lab opens on the reverse chain
        QVERIFY(!w.scheduleView()->isVisible());
        w.setCurrentTab(4);
        QVERIFY(w.scheduleView()->isVisible());
        // A CPU run offers no half precision: the Settings menu's choices are disabled, float32 checked,
        // and asking for fp16 changes nothing.
        auto* fp16 = w.findChild<QAction*>(QStringLiteral("precision-fp16"));
        auto* fp32 = w.findChild<QAction*>(QStringLiteral("precision-fp32"));
        QVERIFY(fp16 && fp32);
        QVERIFY(!fp16->isEnabled() && fp32->isChecked());
        QVERIFY(fp16->toolTip().contains(QStringLiteral("CUDA devices only")));
        w.setPrecision(QStringLiteral("fp16"));
        QCOMPARE(half_inference_dtype(), at::kFloat);
        QVERIFY(!fp16->isChecked());
    }

    // On a CUDA run (the window is told so; this machine need not have one) the Settings menu
    // chooses the precision: the core's setting, the status bar, the menu and the saved setting follow.
    void precisionIsChosenInTheSettingsMenu() {
        QSettings().remove(QStringLiteral("inferencePrecision"));
        ui::MainWindowOptions o{QStringLiteral("CUDA:0"), 2, QStringLiteral("test")};
        o.precision = QStringLiteral("fp32");
        {
            ui::MainWindow w(o);
            auto* status = w.findChild<QLabel*>(QStringLiteral("deviceStatus"));
            QVERIFY(status && status->text().contains(QStringLiteral("CUDA:0 FP32")));
            auto* fp16 = w.findChild<QAction*>(QStringLiteral("precision-fp16"));
            QVERIFY(fp16 && fp16->isEnabled() && !fp16->isChecked());
            fp16->trigger();
            QCOMPARE(half_inference_dtype(), at::kHalf);
            QVERIFY(fp16->isChecked());
            QVERIFY(!w.findChild<QAction*>(QStringLiteral("precision-fp32"))->isChecked());
            QVERIFY2(status->text().contains(QStringLiteral("CUDA:0 FP16")), qPrintable(status->text()));
            QCOMPARE(QSettings().value(QStringLiteral("inferencePrecision")).toString(), QStringLiteral("fp16"));
            w.setPrecision(QStringLiteral("fp8"));  // not a precision: nothing changes
            QCOMPARE(half_inference_dtype(), at::kHalf);
        }
        set_inference_precision(at::kFloat);
        QSettings().remove(QStringLiteral("inferencePrecision"));
    }

    void damagedSettingsKeepTheDefaults() {
        // A hand-edited settings file: indices and values outside every control's range.
        {
            QSettings s;
            s.setValue(QStringLiteral("reverse/guidanceKind"), 99);
            s.setValue(QStringLiteral("reverse/steps"), -5);
            s.setValue(QStringLiteral("reverse/eta"), QStringLiteral("nan"));
            s.setValue(QStringLiteral("reverse/seed"), QStringLiteral("1e300"));
            s.setValue(QStringLiteral("window/tab"), 42);
            s.setValue(QStringLiteral("training/request"), QVariantMap{{QStringLiteral("steps"), 1e300}});
        }
        {
            ui::MainWindow w(ui::MainWindowOptions{QStringLiteral("CPU"), 2, QStringLiteral("test")});
            QCOMPARE(w.currentTab(), 0);
            QCOMPARE(w.reverseView()->findChild<QComboBox*>(QStringLiteral("guidanceKind"))->currentIndex(), 0);
            auto* steps = w.reverseView()->findChild<QSpinBox*>(QStringLiteral("steps"));
            QVERIFY(steps->value() >= steps->minimum() && steps->value() > 0);
            QVERIFY(std::isfinite(w.reverseView()->findChild<QDoubleSpinBox*>(QStringLiteral("eta"))->value()));
        }
        QSettings().clear();
    }

    void mainWindowClosesWithJobsRunning() {
        // A long chain, a 2-D chain and forward previews all on the worker when the window goes.
        auto* w = new ui::MainWindow(ui::MainWindowOptions{QStringLiteral("CPU"), 2, QStringLiteral("test")});
        w->show();
        QSignalSpy ready(w->reverseView(), &ui::ReverseView::modelReady);
        QVERIFY(waitCount(ready, 1, 30000));
        w->reverseView()->findChild<QSpinBox*>(QStringLiteral("steps"))->setValue(1000);
        w->reverseView()->newChain();
        w->toyView()->findChild<QSpinBox*>(QStringLiteral("steps"))->setValue(1000);
        w->toyView()->run();
        for (int t = 0; t < 1000; t += 50) w->forwardView()->setT(t);
        QTest::qWait(300);
        QVERIFY(w->reverseView()->isRunning());
        QElapsedTimer clock;
        clock.start();
        delete w;  // stops the jobs at their next step and joins the worker thread
        QVERIFY2(clock.elapsed() < 2000, qPrintable(QString::number(clock.elapsed())));
    }
};

QTEST_MAIN(TestScheduleView)
#include "test_schedule_view.moc"
