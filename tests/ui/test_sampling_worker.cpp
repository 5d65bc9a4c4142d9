// The job layer: the worker runs a chain on its own thread and emits one frame per step; a stop
// lands within one step; a guidance change during a run applies at the next step; the view reacts.
#include <QtTest/QtTest>

#include <QComboBox>
#include <QSpinBox>
#include <QSignalSpy>
#include <QThread>

#include "core/model_catalog.h"
#include "ui/reverse_view.h"
#include "ui/explorer_view.h"
#include "ui/sampling_worker.h"
#include "ui/toy_view.h"
#include "ui/signal_wait.h"

using namespace dlab;
using namespace dlab::ui;

namespace {

struct WorkerFixture {
    QThread thread;
    SamplingWorker* worker = new SamplingWorker;
    WorkerFixture() {
        worker->moveToThread(&thread);
        QObject::connect(&thread, &QThread::finished, worker, &QObject::deleteLater);
        thread.start();
    }
    ~WorkerFixture() {
        worker->newRequest();
        worker->requestStop();
        thread.quit();
        thread.wait();
    }
    bool load(const char* name = "default") {
        QSignalSpy loaded(worker, &SamplingWorker::modelLoaded);
        auto path = resolve_model(name);
        QMetaObject::invokeMethod(worker, "loadModel", Qt::QueuedConnection,
                                  Q_ARG(QString, QString::fromStdString(path.value())), Q_ARG(QString, QStringLiteral("cpu")));
        return waitCount(loaded, 1, 30000);
    }
    void start(const ChainSettings& s, int steps) {
        const int id = worker->newRequest();
        QMetaObject::invokeMethod(worker, "startChain", Qt::QueuedConnection, Q_ARG(dlab::ui::ChainSettings, s),
                                  Q_ARG(int, steps), Q_ARG(int, id));
    }
};

}  // namespace

class TestSamplingWorker : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

    void oneFramePerStep() {
        WorkerFixture w;
        QVERIFY(w.load());
        QSignalSpy frames(w.worker, &SamplingWorker::frameReady);
        QSignalSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings s;
        s.steps = 12;
        s.classIndex = 7;
        w.start(s, -1);
        QVERIFY(waitCount(stopped, 1, 30000));
        QCOMPARE(frames.size(), 12);
        QCOMPARE(stopped.first().at(0).toInt(), 12);
        int previous_t = 1 << 30;
        for (int i = 0; i < frames.size(); ++i) {
            const auto f = frames.at(i).at(0).value<ChainFrame>();
            QCOMPARE(f.index, i);
            QCOMPARE(f.total, 12);
            QVERIFY(f.t < previous_t);
            previous_t = f.t;
            QCOMPARE(f.xt.size(), QSize(28, 28));
            QVERIFY(!f.x0.isNull() && !f.eps.isNull());
            QVERIFY(f.guided);  // class-conditional with guidance: the extra panels are filled
        }
    }

    void latentChainShowsLatentsAndDecodedImages() {
        WorkerFixture w;
        QSignalSpy info(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load("latent-fashion-mnist"));
        QVERIFY(info.first().at(0).value<ModelInfo>().latent);
        QSignalSpy frames(w.worker, &SamplingWorker::frameReady);
        QSignalSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings s;
        s.steps = 6;
        s.classIndex = 1;
        s.guidance = 2.0;
        w.start(s, -1);
        QVERIFY(waitCount(stopped, 1, 30000));
        QCOMPARE(frames.size(), 6);
        for (int i = 0; i < frames.size(); ++i) {
            const auto f = frames.at(i).at(0).value<ChainFrame>();
            QVERIFY(f.latent);
            // 4 channels of 8x8 side by side in a 2x2 grid with 1-pixel gaps; x0 decoded to 28x28.
            QCOMPARE(f.xt.size(), QSize(17, 17));
            QCOMPARE(f.x0Latent.size(), QSize(17, 17));
            QCOMPARE(f.eps.size(), QSize(17, 17));
            QCOMPARE(f.x0.size(), QSize(28, 28));
            QCOMPARE(f.x0Cond.size(), QSize(28, 28));
        }
        QCOMPARE(frames.last().at(0).value<ChainFrame>().next.size(), QSize(28, 28));
        // The one-step VAE grid.
        QSignalSpy grids(w.worker, &SamplingWorker::gridReady);
        const int id = w.worker->newRequest();
        QMetaObject::invokeMethod(w.worker, "generateVaeGrid", Qt::QueuedConnection, Q_ARG(int, 9), Q_ARG(quint64, quint64(1)),
                                  Q_ARG(int, id));
        QVERIFY(waitCount(grids, 1, 30000));
        QCOMPARE(grids.first().at(0).value<QImage>().size(), QSize(3 * 28 + 4 * 2, 3 * 28 + 4 * 2));
    }

    void stopLandsWithinOneStep() {
        WorkerFixture w;
        QVERIFY(w.load());
        QSignalSpy frames(w.worker, &SamplingWorker::frameReady);
        QSignalSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings s;
        s.steps = 1000;
        s.sampler = SamplerKind::Ddpm;
        w.start(s, -1);
        QVERIFY(waitCount(frames, 1, 30000));
        w.worker->requestStop();
        const int seenAtStop = frames.size();
        QVERIFY(waitCount(stopped, 1, 30000));
        QCoreApplication::processEvents();
        const int done = stopped.first().at(0).toInt();
        // The step in flight when stop was requested may complete, no more.
        QVERIFY2(done <= seenAtStop + 1, qPrintable(QString("%1 frames at stop, %2 done").arg(seenAtStop).arg(done)));
        QVERIFY(done < 1000);
        // The chain is kept: continuing runs the remaining steps from where it stopped.
        frames.clear();
        const int id = w.worker->newRequest();
        QMetaObject::invokeMethod(w.worker, "runSteps", Qt::QueuedConnection, Q_ARG(int, 3), Q_ARG(int, id));
        QVERIFY(waitCount(stopped, 2, 30000));
        QCOMPARE(frames.size(), 3);
        QCOMPARE(frames.first().at(0).value<ChainFrame>().index, done);
    }

    void guidanceChangeAppliesAtNextStep() {
        WorkerFixture w;
        QVERIFY(w.load());
        QSignalSpy frames(w.worker, &SamplingWorker::frameReady);
        QSignalSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings s;
        s.steps = 6;
        s.guidance = 2.0;
        w.start(s, 3);  // run 3 steps, then stop
        QVERIFY(waitCount(stopped, 1, 30000));
        w.worker->guidanceControl()->set_scale(5.0);  // changed between two steps
        const int id = w.worker->newRequest();
        QMetaObject::invokeMethod(w.worker, "runSteps", Qt::QueuedConnection, Q_ARG(int, -1), Q_ARG(int, id));
        QVERIFY(waitCount(stopped, 2, 30000));
        QCOMPARE(frames.size(), 6);
        for (int i = 0; i < 6; ++i)
            QCOMPARE(frames.at(i).at(0).value<ChainFrame>().guidance, i < 3 ? 2.0 : 5.0);
    }

    void classifierGuidanceLiveWithHeatMap() {
        WorkerFixture w;
        QSignalSpy loaded(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load());
        QVERIFY(loaded.at(0).at(0).value<ModelInfo>().classifierGuidance);  // the bundled one fits
        QSignalSpy frames(w.worker, &SamplingWorker::frameReady);
        QSignalSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings s;
        s.steps = 6;
        s.guidance = 0.0;  // unconditional path, steered by the classifier only
        s.classifierScale = 0.0;
        w.start(s, 3);
        QVERIFY(waitCount(stopped, 1, 30000));
        w.worker->guidanceControl()->set_classifier_scale(8.0);  // switched on between two steps
        const int id = w.worker->newRequest();
        QMetaObject::invokeMethod(w.worker, "runSteps", Qt::QueuedConnection, Q_ARG(int, -1), Q_ARG(int, id));
        QVERIFY(waitCount(stopped, 2, 30000));
        QCOMPARE(frames.size(), 6);
        for (int i = 0; i < 6; ++i) {
            const auto f = frames.at(i).at(0).value<ChainFrame>();
            QCOMPARE(f.classifierScale, i < 3 ? 0.0 : 8.0);
            QCOMPARE(f.classifierMap.isNull(), i < 3);  // the gradient's heat map only on guided steps
        }
    }

    void sweepRowsReachTheExplorer() {
        WorkerFixture w;
        ExplorerView view(w.worker);
        QSignalSpy loaded(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load());
        view.setModelInfo(loaded.at(0).at(0).value<ModelInfo>());
        QSignalSpy rows(w.worker, &SamplingWorker::sweepRow);
        QSignalSpy done(&view, &ExplorerView::finished);
        view.runWith(0, QStringLiteral("0, 3"), 20, 3);
        QVERIFY(done.wait(120000));
        QCOMPARE(done.at(0).at(0).toBool(), true);
        QCOMPARE(rows.size(), 2);
        QCOMPARE(view.rows(0).size(), 2);
        const SweepRow& r0 = view.rows(0)[0];
        const SweepRow& r3 = view.rows(0)[1];
        QCOMPARE(r3.scale, 3.0);
        QVERIFY(std::isfinite(r0.fid) && r0.fid > 0);
        QVERIFY(r0.precision >= 0 && r0.precision <= 1 && r0.recall >= 0 && r0.recall <= 1);
        // Guidance raises class agreement even in this small, short sweep.
        QVERIFY2(r3.agreement > r0.agreement, qPrintable(QString("%1 vs %2").arg(r3.agreement).arg(r0.agreement)));
        QVERIFY(!r3.samples.isNull());
        view.showRow(0, 0);
        QCOMPARE(view.currentImage().size(), r0.samples.size());  // clicking shows that scale's samples
    }

    void newerRequestWins() {
        WorkerFixture w;
        QVERIFY(w.load());
        QSignalSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings slow;
        slow.steps = 1000;
        slow.sampler = SamplerKind::Ddpm;
        w.start(slow, -1);
        ChainSettings quick;
        quick.steps = 4;
        w.start(quick, -1);  // supersedes the first before or while it runs
        QTRY_VERIFY_WITH_TIMEOUT(!stopped.isEmpty() && stopped.last().at(1).toInt() == 4, 30000);
        QCOMPARE(stopped.last().at(0).toInt(), 4);
    }

    void batchStripAcrossScales() {
        WorkerFixture w;
        QVERIFY(w.load());
        QSignalSpy grids(w.worker, &SamplingWorker::gridReady);
        QSignalSpy progress(w.worker, &SamplingWorker::batchProgress);
        const int id = w.worker->newRequest();
        QMetaObject::invokeMethod(w.worker, "generateGrid", Qt::QueuedConnection, Q_ARG(int, 3),
                                  Q_ARG(QVector<double>, (QVector<double>{0.0, 3.0})), Q_ARG(int, 8), Q_ARG(int, 5),
                                  Q_ARG(quint64, quint64(1)), Q_ARG(int, id));
        QVERIFY(waitCount(grids, 1, 60000));
        const QImage grid = grids.first().at(0).value<QImage>();
        // Two rows (one per scale) of 8 images of 28x28 with 2-pixel borders.
        QCOMPARE(grid.size(), QSize(8 * 30 + 2, 2 * 30 + 2));
        QCOMPARE(progress.size(), 10);  // 2 scales x 5 steps
        QVERIFY(grids.first().at(1).toString().contains("0, 3"));
    }

    void badModelIsAnErrorNotACrash() {
        WorkerFixture w;
        QSignalSpy failed(w.worker, &SamplingWorker::failed);
        QMetaObject::invokeMethod(w.worker, "loadModel", Qt::QueuedConnection,
                                  Q_ARG(QString, QStringLiteral("/nonexistent/model.safetensors")), Q_ARG(QString, QStringLiteral("cpu")));
        QVERIFY(waitCount(failed, 1, 10000));
        QVERIFY(failed.first().at(0).toString().contains("/nonexistent/model.safetensors"));
        ChainSettings s;
        w.start(s, -1);
        QVERIFY(waitCount(failed, 2, 10000));
        QVERIFY(failed.last().at(0).toString().contains("No model"));
    }

    void toyViewRunsAChainOffTheGuiThread() {
        ToyView view;
        QSignalSpy ready(&view, &ToyView::chainReady);
        view.run();
        QVERIFY(ready.wait(30000));
        QCOMPARE(view.frameCount(), 50);
        view.showFrame(50);  // the final samples
        view.showFrame(10);
        // A long job stops within a step when cancelled, keeping the previous chain.
        QSignalSpy again(&view, &ToyView::chainReady);
        view.findChild<QSpinBox*>(QStringLiteral("steps"))->setValue(1000);
        view.run();
        view.cancel();
        QTest::qWait(1500);
        QVERIFY(again.isEmpty());
        QCOMPARE(view.frameCount(), 50);
    }

    void viewReactsToTheWorker() {
        ReverseView view(QStringLiteral("cpu"));
        view.resize(1000, 600);
        view.show();
        QSignalSpy finished(&view, &ReverseView::chainFinished);
        QTRY_VERIFY_WITH_TIMEOUT(view.findChild<QComboBox*>() != nullptr, 1000);
        // Wait for the model, then play.
        QTest::qWait(200);
        QTRY_VERIFY_WITH_TIMEOUT(!view.isRunning(), 30000);
        QTest::qWait(500);
        view.newChain();
        QVERIFY(view.isRunning());
        QVERIFY(finished.wait(60000));
        QCOMPARE(view.frameCount(), 50);
        QVERIFY(!view.isRunning());
        QVERIFY(!view.currentImage().isNull());
        QVERIFY(view.currentParameters().contains("steps=50"));
        QTemporaryDir dir;
        const QString video = dir.filePath("chain.mp4");
        QCOMPARE(view.exportChainVideo(video), QString());
        QVERIFY(QFileInfo(video).size() > 1000);
    }
};

QTEST_MAIN(TestSamplingWorker)
#include "test_sampling_worker.moc"
