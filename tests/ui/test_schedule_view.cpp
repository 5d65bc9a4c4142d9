// The schedule view plots what core computes, and reacts to its controls.
#include <QtTest/QtTest>

#include <QCheckBox>
#include <QSpinBox>

#include "core/schedule.h"
#include "ui/forward_view.h"
#include "ui/main_window.h"
#include "ui/reverse_view.h"
#include "ui/schedule_view.h"

using namespace dlab;

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

    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }  // no user settings

    void forwardViewNoisesImagesAndPoints() {
        ui::ForwardView view;
        view.show();
        QVERIFY(view.loadDatasetSample(7, 2));
        view.setT(0);
        const QImage clean = view.noisedImage(0);
        QCOMPARE(clean.size(), QSize(28, 28));
        view.setT(999);
        QVERIFY(view.noisedImage(0) != clean);
        // A 2-D toy set is drawn as a point cloud; an unreadable image file is an error, not a crash.
        QVERIFY(view.loadToySet(QStringLiteral("moons")));
        QCOMPARE(view.noisedImage(1).size(), QSize(220, 220));
        QVERIFY(!view.loadToySet(QStringLiteral("nope")));
        QVERIFY(!view.loadImageFile(QStringLiteral("/nonexistent.png")));
    }

    void forwardViewNoisesInLatentSpace() {
        ui::ForwardView view;
        QVERIFY(view.loadDatasetSample(0, 0));
        QVERIFY(view.latentImage().isNull());
        QVERIFY(view.setLatent(true));
        view.setT(0);
        const QImage clean = view.latentImage();
        QCOMPARE(clean.size(), QSize(28, 28));  // decoded back to the image size
        view.setT(700);
        QVERIFY(view.latentImage() != clean);
        QVERIFY(view.setLatent(false));
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
    }
};

QTEST_MAIN(TestScheduleView)
#include "test_schedule_view.moc"
