// The job layer: the worker runs a chain on its own thread and emits one frame per step; a stop
// lands within one step; a guidance change during a run applies at the next step; the view reacts.
#include <QtTest/QtTest>

#include <atomic>
#include <cstdlib>
#include <memory>

#include <QComboBox>
#include <QProgressBar>
#include <QSpinBox>
#include <QSignalSpy>
#include <QThread>

#include "core/data/datasets.h"
#include "core/io/model_catalog.h"
#include "ui/common/tensor_image.h"
#include "core/forward/schedule.h"
#include "ui/views/batch_view.h"
#include "ui/views/reverse_view.h"
#include "ui/views/explorer_view.h"
#include "ui/jobs/sampling_worker.h"
#include "ui/views/toy_view.h"
#include "ui/views/sds_view.h"
#include "ui/views/video_view.h"
#include "core/io/safetensors.h"
#include "ui/signal_wait.h"
#include "ui/worker_fixture.h"

using namespace dlab;
using namespace dlab::ui;


namespace {
// A [1, H, W] image in [-1, 1] as the 8-bit grey picture the views show.
QImage greyImage(const at::Tensor& x) { return tensorToImage(x).convertToFormat(QImage::Format_Grayscale8); }
}  // namespace

class TestSamplingWorker : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

    void oneFramePerStep() {
        WorkerFixture w;
        QVERIFY(w.load());
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
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
            // The worker times its step and the frame's conversion apart (--bench-stall reports them).
            QVERIFY2(f.stepMs > 0 && f.stepMs < 60000 && f.frameMs > 0 && f.frameMs < 60000,
                     qPrintable(QStringLiteral("step %1 ms, frame %2 ms").arg(f.stepMs).arg(f.frameMs)));
        }
    }

    void chainEndsOnTheFinalImage() {
        // Timesteps down to t = 0 (linspace): the first frame's x_t is pure noise and starts at
        // t = T-1, the last one is nearly the final sample, drawn on the same scale (the panel and
        // the strip end where the image is; black -1, white +1 in both).
        WorkerFixture w;
        QVERIFY(w.load());
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings s;
        s.steps = 10;
        s.spacing = TimestepSpacing::Linspace;
        w.start(s, -1);
        QVERIFY(waitCount(stopped, 1, 30000));
        QCOMPARE(frames.size(), 10);
        const auto first = frames.first().at(0).value<ChainFrame>();
        const auto last = frames.last().at(0).value<ChainFrame>();
        QCOMPARE(first.t, 999);
        QCOMPARE(last.t, 0);
        auto meanAbsDiff = [](const QImage& a, const QImage& b) {
            const QImage ga = a.convertToFormat(QImage::Format_Grayscale8), gb = b.convertToFormat(QImage::Format_Grayscale8);
            double sum = 0;
            for (int y = 0; y < ga.height(); ++y)
                for (int x = 0; x < ga.width(); ++x) sum += std::abs(int(ga.constScanLine(y)[x]) - int(gb.constScanLine(y)[x]));
            return sum / (ga.width() * ga.height());
        };
        QCOMPARE(last.xt.size(), last.next.size());
        const double end = meanAbsDiff(last.xt, last.next), start = meanAbsDiff(first.xt, last.next);
        QVERIFY2(end < 4.0, qPrintable(QStringLiteral("last x_t differs from the final image by %1 grey levels").arg(end)));
        QVERIFY2(start > 40.0, qPrintable(QStringLiteral("the first x_t is only %1 grey levels from the image").arg(start)));
    }

    void chainStartsFromATestImage() {
        // Start from: a test image noised to t. The chain starts at the sampler's first timestep at
        // or below t and, from a low t, ends near that image; from the top it draws another one.
        // Out-of-range settings are messages.
        WorkerFixture w;
        QVERIFY(w.load());
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        QVERIFY2(test.ok(), test.error().c_str());
        const int image = 7;
        const QImage real = greyImage(test->x[image]);
        auto run = [&](int realT) {
            ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
            ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
            ChainSettings s;
            s.steps = 10;
            s.spacing = TimestepSpacing::Linspace;
            s.classIndex = int(test->labels[image].item<int64_t>());
            s.guidance = 1.0;
            s.realImage = image;
            s.realT = realT;
            w.start(s, -1);
            if (!waitCount(stopped, 1, 30000)) qFatal("no end of the chain");
            QVector<ChainFrame> out;
            for (const auto& f : frames) out << f.at(0).value<ChainFrame>();
            return out;
        };
        auto diff = [&](const QImage& a) {
            const QImage g = a.convertToFormat(QImage::Format_Grayscale8);
            double sum = 0;
            for (int y = 0; y < g.height(); ++y)
                for (int x = 0; x < g.width(); ++x) sum += std::abs(int(g.constScanLine(y)[x]) - int(real.constScanLine(y)[x]));
            return sum / (g.width() * g.height());
        };
        // linspace 10 steps: 999, 888, ..., 222, 111, 0; t = 300 starts at 222, the eighth step.
        const QVector<ChainFrame> low = run(300);
        QCOMPARE(low.size(), 3);
        QCOMPARE(low.first().index, 7);
        QCOMPARE(low.first().t, 222);
        QCOMPARE(low.first().total, 10);
        const QVector<ChainFrame> high = run(999);
        QCOMPARE(high.size(), 10);
        const double dLow = diff(low.last().next), dHigh = diff(high.last().next);
        qInfo("grey levels from the test image: from t = 222 %.1f, from t = 999 %.1f", dLow, dHigh);
        QVERIFY(dLow < 0.6 * dHigh);
        ThreadSpy failed(w.worker, &SamplingWorker::failed);
        ChainSettings bad;
        bad.realImage = 10000;
        w.start(bad, -1);
        QVERIFY(waitCount(failed, 1, 30000));
        QVERIFY2(failed.first().at(0).toString().contains(QStringLiteral("10000 test images")), qPrintable(failed.first().at(0).toString()));
        bad.realImage = 0;
        bad.realT = 1000;
        w.start(bad, -1);
        QVERIFY(waitCount(failed, 2, 30000));
        QVERIFY2(failed.last().at(0).toString().contains(QStringLiteral("0..999")), qPrintable(failed.last().at(0).toString()));
        // Nothing half-started is left to continue from pure noise.
        const int id = w.worker->newRequest();
        QMetaObject::invokeMethod(w.worker, "runSteps", Qt::QueuedConnection, Q_ARG(int, -1), Q_ARG(int, id));
        QVERIFY(waitCount(failed, 3, 30000));
        QVERIFY2(failed.last().at(0).toString().contains(QStringLiteral("No chain to continue")), qPrintable(failed.last().at(0).toString()));
    }

    void promptedChainShowsPerWordAttention() {
        // The bundled text-to-image model: the prompt reaches the network, every frame carries one
        // cross-attention map per word; a prompt with unknown words fails with a message naming them.
        WorkerFixture w;
        ThreadSpy info(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load("fashion-mnist-text"));
        QVERIFY(waitCount(info, 1, 1000));
        const auto mi = info.first().at(0).value<ModelInfo>();
        QVERIFY(mi.text);
        QVERIFY(mi.vocabulary.contains(QStringLiteral("sandal")));
        QCOMPARE(mi.promptWords, 14);
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ChainSettings s;
        s.steps = 4;
        s.prompt = QStringLiteral("a dark sandal");
        w.start(s, -1);
        QVERIFY(waitCount(stopped, 1, 60000));
        QCOMPARE(frames.size(), 4);
        for (int i = 0; i < frames.size(); ++i) {
            const auto f = frames.at(i).at(0).value<ChainFrame>();
            QVERIFY(f.guided);  // the prompt against the empty prompt
            QCOMPARE(f.tokens.size(), 3);
            QVERIFY2(f.tokens[2].startsWith(QStringLiteral("“sandal”")), qPrintable(f.tokens[2]));
            QCOMPARE(f.tokenMaps.size(), 3);
            QCOMPARE(f.tokenMaps[0].size(), QSize(28, 28));
        }
        // Another prompt from the same noise: another image.
        const QImage first = frames.last().at(0).value<ChainFrame>().next;
        s.prompt = QStringLiteral("a large bag");
        w.start(s, -1);
        QVERIFY(waitCount(stopped, 2, 60000));
        QVERIFY(frames.last().at(0).value<ChainFrame>().next != first);
        ThreadSpy failed(w.worker, &SamplingWorker::failed);
        s.prompt = QStringLiteral("a purple sandal");
        w.start(s, -1);
        QVERIFY(waitCount(failed, 1, 30000));
        QVERIFY2(failed.first().at(0).toString().contains(QStringLiteral("'purple'")), qPrintable(failed.first().at(0).toString()));
    }

    void latentChainShowsLatentsAndDecodedImages() {
        WorkerFixture w;
        ThreadSpy info(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load("latent-fashion-mnist"));
        QVERIFY(info.first().at(0).value<ModelInfo>().latent);
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
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
        ThreadSpy grids(w.worker, &SamplingWorker::gridReady);
        const int id = w.worker->newRequest();
        QMetaObject::invokeMethod(w.worker, "generateVaeGrid", Qt::QueuedConnection, Q_ARG(int, 9), Q_ARG(quint64, quint64(1)),
                                  Q_ARG(int, id));
        QVERIFY(waitCount(grids, 1, 30000));
        QCOMPARE(grids.first().at(0).value<QImage>().size(), QSize(3 * 28 + 4 * 2, 3 * 28 + 4 * 2));
    }

    void stopLandsWithinOneStep() {
        WorkerFixture w;
        QVERIFY(w.load());
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
        // Frames *emitted* so far, counted on the worker's thread (the spy records them later, queued).
        auto emitted = std::make_shared<std::atomic<int>>(0);
        QObject::connect(w.worker, &SamplingWorker::frameReady, w.worker, [emitted](const ChainFrame&) { ++*emitted; },
                         Qt::DirectConnection);
        ChainSettings s;
        s.steps = 1000;
        s.sampler = SamplerKind::Ddpm;
        w.start(s, -1);
        QVERIFY(waitCount(frames, 1, 30000));
        w.worker->requestStop();
        const int seenAtStop = emitted->load();
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
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
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
        ThreadSpy loaded(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load());
        QVERIFY(loaded.at(0).at(0).value<ModelInfo>().classifierGuidance);  // the bundled one fits
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
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
        ThreadSpy loaded(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load());
        view.setModelInfo(loaded.at(0).at(0).value<ModelInfo>());
        ThreadSpy rows(w.worker, &SamplingWorker::sweepRow);
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

    // The explorer sweeps with the sampler and timesteps it shows: a model's recommendation selects
    // them, and another choice gives other samples from the same starting noise.
    void sweepTakesTheChosenSampler() {
        WorkerFixture w;
        ExplorerView view(w.worker);
        ThreadSpy loaded(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load());
        ModelInfo info = loaded.at(0).at(0).value<ModelInfo>();
        info.recommendedSampler = QStringLiteral("dpmpp2m");
        info.recommendedSteps = 4;
        info.recommendedSpacing = QStringLiteral("linspace");
        view.setModelInfo(info);
        auto* sampler = view.findChild<QComboBox*>(QStringLiteral("explorerSampler"));
        auto* spacing = view.findChild<QComboBox*>(QStringLiteral("explorerSpacing"));
        QVERIFY(sampler && spacing);
        QCOMPARE(sampler->currentText(), QStringLiteral("dpmpp2m"));
        QCOMPARE(spacing->currentText(), QStringLiteral("linspace"));
        QImage samples[2];
        for (int i = 0; i < 2; ++i) {
            if (i == 1) view.setSampling(SamplerKind::Ddim, TimestepSpacing::Trailing);
            QSignalSpy done(&view, &ExplorerView::finished);
            view.runWith(0, QStringLiteral("1"), 20, 4);
            QVERIFY(done.wait(120000));
            QCOMPARE(done.at(0).at(0).toBool(), true);
            QCOMPARE(view.rows(0).size(), 1);
            samples[i] = view.rows(0)[0].samples;
        }
        QCOMPARE(sampler->currentText(), QStringLiteral("ddim"));
        QVERIFY(!samples[0].isNull() && samples[0].size() == samples[1].size());
        QVERIFY(samples[0] != samples[1]);
    }

    // The explorer's dynamic-thresholding switch reaches the sampler: at a high scale, static
    // clipping leaves black backgrounds at -1 while thresholding rescales them away from the bound.
    void dynamicThresholdingChangesSaturation() {
        WorkerFixture w;
        ExplorerView view(w.worker);
        ThreadSpy loaded(w.worker, &SamplingWorker::modelLoaded);
        QVERIFY(w.load());
        view.setModelInfo(loaded.at(0).at(0).value<ModelInfo>());
        double saturation[2] = {0, 0}, fid[2] = {0, 0};
        for (int dynamic = 0; dynamic < 2; ++dynamic) {
            view.setDynamicThresholding(dynamic == 1);
            QSignalSpy done(&view, &ExplorerView::finished);
            view.runWith(0, QStringLiteral("6"), 20, 5);
            QVERIFY(done.wait(120000));
            QCOMPARE(done.at(0).at(0).toBool(), true);
            QCOMPARE(view.rows(0).size(), 1);
            saturation[dynamic] = view.rows(0)[0].saturation;
            fid[dynamic] = view.rows(0)[0].fid;
        }
        qInfo("s = 6, N = 20, 5 steps: saturated pixels static %.3f, dynamic %.3f; FID %.1f, %.1f", saturation[0],
              saturation[1], fid[0], fid[1]);
        QVERIFY(saturation[0] > 0.05);
        QVERIFY(saturation[1] < 0.5 * saturation[0]);
    }

    void newerRequestWins() {
        WorkerFixture w;
        QVERIFY(w.load());
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
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
        ThreadSpy grids(w.worker, &SamplingWorker::gridReady);
        ThreadSpy progress(w.worker, &SamplingWorker::batchProgress);
        const int id = w.worker->newRequest();
        BatchGridRequest request;
        request.classIndex = 3;
        request.scales = {0.0, 3.0};
        request.perScale = 8;
        request.steps = 5;
        request.seed = 1;
        QMetaObject::invokeMethod(w.worker, "generateGrid", Qt::QueuedConnection, Q_ARG(dlab::ui::BatchGridRequest, request),
                                  Q_ARG(int, id));
        QVERIFY(waitCount(grids, 1, 60000));
        const QImage grid = grids.first().at(0).value<QImage>();
        // Two rows (one per scale) of 8 images of 28x28 with 2-pixel borders.
        QCOMPARE(grid.size(), QSize(8 * 30 + 2, 2 * 30 + 2));
        QCOMPARE(progress.size(), 10);  // 2 scales x 5 steps
        QVERIFY(grids.first().at(1).toString().contains("0, 3"));
        // The sampler and its timesteps reach the job: the same noise drawn another way gives
        // another grid, and the same request gives the same grid again.
        auto gridOf = [&](SamplerKind kind, TimestepSpacing spacing) {
            BatchGridRequest r = request;
            r.sampler = kind;
            r.spacing = spacing;
            const int before = grids.size();
            QMetaObject::invokeMethod(w.worker, "generateGrid", Qt::QueuedConnection, Q_ARG(dlab::ui::BatchGridRequest, r),
                                      Q_ARG(int, w.worker->newRequest()));
            return waitCount(grids, before + 1, 60000) ? grids.last().at(0).value<QImage>() : QImage();
        };
        const QImage again = gridOf(SamplerKind::Ddim, TimestepSpacing::Trailing);
        const QImage linspace = gridOf(SamplerKind::Ddim, TimestepSpacing::Linspace);
        const QImage dpm = gridOf(SamplerKind::DpmSolverPP2M, TimestepSpacing::Linspace);
        QVERIFY(!again.isNull() && !linspace.isNull() && !dpm.isNull());
        QCOMPARE(again, grid);
        QVERIFY(linspace != grid);
        QVERIFY(dpm != linspace);
    }

    void batchGridFromATestImage() {
        // SDEdit in the Batch view: every sample starts from one test image noised to t, each column
        // with its own noise (the same in every row of a strip), in the image's own class (-2).
        WorkerFixture w;
        ThreadSpy grids(w.worker, &SamplingWorker::gridReady);
        ThreadSpy progress(w.worker, &SamplingWorker::batchProgress);
        ThreadSpy failed(w.worker, &SamplingWorker::failed);
        QVERIFY(w.load());
        const int image = 7;
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        QVERIFY2(test.ok(), test.error().c_str());
        const QImage real = greyImage(test->x[image]);
        BatchGridRequest request;
        request.classIndex = -2;
        request.scales = {1.0, 3.0};
        request.perScale = 4;
        request.steps = 10;
        request.spacing = TimestepSpacing::Linspace;
        request.seed = 5;
        request.startImage = image;
        request.startT = 300;  // linspace 10 steps: starts at 222, the last 3 steps
        auto gridOf = [&](const BatchGridRequest& r) {
            const int before = grids.size();
            QMetaObject::invokeMethod(w.worker, "generateGrid", Qt::QueuedConnection, Q_ARG(dlab::ui::BatchGridRequest, r),
                                      Q_ARG(int, w.worker->newRequest()));
            return waitCount(grids, before + 1, 60000) ? grids.last().at(0).value<QImage>().convertToFormat(QImage::Format_Grayscale8)
                                                       : QImage();
        };
        // Mean grey-level difference of the tile at (row, col) from another 28x28 image (or tile).
        auto tileDiff = [](const QImage& g, int row, int col, const QImage& other, int orow = -1, int ocol = -1) {
            double sum = 0;
            for (int y = 0; y < 28; ++y)
                for (int x = 0; x < 28; ++x) {
                    const int a = g.constScanLine(2 + row * 30 + y)[2 + col * 30 + x];
                    const int b = orow < 0 ? other.constScanLine(y)[x] : other.constScanLine(2 + orow * 30 + y)[2 + ocol * 30 + x];
                    sum += std::abs(a - b);
                }
            return sum / (28 * 28);
        };
        const QImage low = gridOf(request);
        QVERIFY(!low.isNull());
        QCOMPARE(low.size(), QSize(4 * 30 + 2, 2 * 30 + 2));
        QCOMPARE(progress.size(), 6);  // 2 scales x the last 3 of 10 steps
        const QString title = grids.last().at(1).toString();
        QVERIFY2(title.contains(QStringLiteral("test image 7")) && title.contains(QStringLiteral("t = 222")), qPrintable(title));
        BatchGridRequest noise = request;
        noise.startImage = -1;
        noise.classIndex = int(test->labels[image].item<int64_t>());
        const QImage high = gridOf(noise);
        QVERIFY(!high.isNull());
        double dLow = 0, dHigh = 0, between = 0;
        for (int c = 0; c < 4; ++c) {
            dLow += tileDiff(low, 0, c, real) / 4;
            dHigh += tileDiff(high, 0, c, real) / 4;
        }
        for (int c = 1; c < 4; ++c) between += tileDiff(low, 0, 0, low, 0, c) / 3;
        qInfo("grey levels from the test image: from t = 222 %.1f, from noise %.1f; between variations %.1f", dLow, dHigh, between);
        QVERIFY(dLow < 0.6 * dHigh);
        QVERIFY(between > 0.5);  // each column its own noise: variations, not one image four times
        // The same request: the same grid.
        QCOMPARE(gridOf(request), low);
        // "The start image's class" without a start image, and an image past the test set: messages.
        BatchGridRequest bad = noise;
        bad.classIndex = -2;
        QMetaObject::invokeMethod(w.worker, "generateGrid", Qt::QueuedConnection, Q_ARG(dlab::ui::BatchGridRequest, bad),
                                  Q_ARG(int, w.worker->newRequest()));
        QVERIFY(waitCount(failed, 1, 30000));
        QVERIFY2(failed.last().at(0).toString().contains(QStringLiteral("needs a start image")), qPrintable(failed.last().at(0).toString()));
        bad = request;
        bad.startImage = 10000;
        QMetaObject::invokeMethod(w.worker, "generateGrid", Qt::QueuedConnection, Q_ARG(dlab::ui::BatchGridRequest, bad),
                                  Q_ARG(int, w.worker->newRequest()));
        QVERIFY(waitCount(failed, 2, 30000));
        QVERIFY2(failed.last().at(0).toString().contains(QStringLiteral("10000 test images")), qPrintable(failed.last().at(0).toString()));
        // The view: a start image selects the image's own class and travels with the run's record.
        BatchView view(w.worker);
        ModelInfo info;
        for (const auto& n : test->class_names) info.classNames << QString::fromStdString(n);
        view.setModelInfo(info);
        view.setStartFrom(image, 300);
        auto* cls = view.findChild<QComboBox*>();
        QVERIFY(cls && cls->currentData().toInt() == -2);
        const int before = grids.size();
        view.generateStrip();
        QVERIFY(waitCount(grids, before + 1, 60000));
        QCOMPARE(view.lastRequest().value(QStringLiteral("start_image")).toInt(), image);
        QCOMPARE(view.lastRequest().value(QStringLiteral("start_t")).toInt(), 300);
        QVERIFY2(view.parameters().contains(QStringLiteral("class=start-image")) && view.parameters().contains(QStringLiteral("start_image=7 start_t=300")),
                 qPrintable(view.parameters()));
        const QJsonObject record = view.lastRequest();
        view.setStartFrom(-1, 500);
        view.runWith(record);  // the record's start comes back
        QVERIFY(waitCount(grids, before + 2, 60000));
        QCOMPARE(view.lastRequest().value(QStringLiteral("start_image")).toInt(), image);
        QVERIFY(grids.last().at(1).toString().contains(QStringLiteral("test image 7")));
    }

    void nonFiniteChainsAreRefused() {
        // A model whose weights are NaN (a diverged run): the chain stops at its first step with a
        // message, instead of "finished" over black panels.
        QTemporaryDir dir;
        auto file = dlab::load_safetensors(dlab::resolve_model("fashion-mnist-live").value());
        QVERIFY(file.ok());
        dlab::TensorFile broken = file.value();
        for (auto& [name, t] : broken.tensors)
            if (t.is_floating_point()) t = at::full_like(t, std::nan(""));
        const QString path = dir.filePath("nan.safetensors");
        QVERIFY(dlab::save_safetensors(path.toStdString(), broken).ok());
        WorkerFixture w;
        ThreadSpy loaded(w.worker, &SamplingWorker::modelLoaded);
        ThreadSpy failed(w.worker, &SamplingWorker::failed);
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
        QMetaObject::invokeMethod(w.worker, "loadModel", Qt::QueuedConnection, Q_ARG(QString, path), Q_ARG(QString, QStringLiteral("cpu")));
        QVERIFY(waitCount(loaded, 1, 30000));
        ChainSettings s;
        s.steps = 10;
        w.start(s, -1);
        QVERIFY(waitCount(stopped, 1, 30000));
        QCOMPARE(stopped.first().at(0).toInt(), 0);  // no step recorded
        QCOMPARE(frames.size(), 0);
        QVERIFY(!failed.isEmpty());
        QVERIFY2(failed.first().at(0).toString().contains("non-finite"), qPrintable(failed.first().at(0).toString()));
    }

    void badModelIsAnErrorNotACrash() {
        WorkerFixture w;
        ThreadSpy failed(w.worker, &SamplingWorker::failed);
        QMetaObject::invokeMethod(w.worker, "loadModel", Qt::QueuedConnection,
                                  Q_ARG(QString, QStringLiteral("/nonexistent/model.safetensors")), Q_ARG(QString, QStringLiteral("cpu")));
        QVERIFY(waitCount(failed, 1, 10000));
        QVERIFY(failed.first().at(0).toString().contains("/nonexistent/model.safetensors"));
        ChainSettings s;
        w.start(s, -1);
        QVERIFY(waitCount(failed, 2, 10000));
        QVERIFY(failed.last().at(0).toString().contains("No model"));
    }

    void forwardPreviewsAreCoalescedAndInterleaveWithAChain() {
        WorkerFixture w;
        QVERIFY(w.load());
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ThreadSpy previews(w.worker, &SamplingWorker::forwardReady);
        w.startLong(400);
        QVERIFY(waitCount(frames, 3, 30000));
        // 50 scrub positions sent at once while the chain runs: the latest wins.
        for (int t = 0; t < 50; ++t) {
            ForwardRequest r;
            r.classIndex = 3;
            r.t = t * 20;
            r.serial = t + 1;
            w.worker->requestForward(r);
        }
        int last = 0;
        QElapsedTimer clock;
        clock.start();
        while (last != 50 && clock.elapsed() < 30000) {
            previews.wait(20);
            if (!previews.isEmpty()) last = previews.last().at(0).value<ForwardResult>().request.serial;
        }
        QCOMPARE(last, 50);
        // It landed between chain steps, not after the chain.
        QVERIFY(stopped.isEmpty());
        const int served = w.worker->forwardServed();
        qInfo("50 forward requests during a chain: %d computed, %lld chain frames so far", served, qlonglong(frames.size()));
        QVERIFY2(served >= 1 && served <= 5, qPrintable(QString::number(served)));
        QCOMPARE(previews.size(), served);
        const ForwardResult r = previews.last().at(0).value<ForwardResult>();
        QVERIFY(r.error.isEmpty());
        QCOMPARE(r.request.t, 980);
        QCOMPARE(r.a.size(), QSize(28, 28));
        QCOMPARE(r.stripA.size(), ForwardJob::kStrip);
        // The curves are the schedules' own: abar at t as core computes it.
        ScheduleConfig lin;
        lin.kind = ScheduleKind::Linear;
        const auto sched = NoiseSchedule::create(lin).value();
        QCOMPARE(r.curveA.size(), 1000);
        QCOMPARE(r.curveA[980], sched.alpha_bar(980));
        QCOMPARE(r.alphaBarA, sched.alpha_bar(980));
        const int before = frames.size();
        QVERIFY(waitCount(frames, before + 3, 30000));  // the chain goes on
        w.worker->requestStop();
        QVERIFY(waitCount(stopped, 1, 30000));
        QVERIFY(stopped.first().at(0).toInt() < 400);
    }

    void userImagesAreResizedToTheModelSize() {
        WorkerFixture w;
        QVERIFY(w.load());
        QTemporaryDir dir;
        // 90x60, left half white, right half black: centre-cropped to 60x60, then 28x28 grey.
        QImage img(90, 60, QImage::Format_RGB32);
        img.fill(Qt::black);
        for (int y = 0; y < 60; ++y)
            for (int x = 0; x < 45; ++x) img.setPixel(x, y, qRgb(255, 255, 255));
        const QString path = dir.filePath("mine.png");
        QVERIFY(img.save(path));
        ThreadSpy previews(w.worker, &SamplingWorker::forwardReady);
        ForwardRequest r;
        r.source = ForwardRequest::File;
        r.path = path;
        r.t = 0;
        w.worker->requestForward(r);
        QVERIFY(waitCount(previews, 1, 30000));
        const ForwardResult out = previews.first().at(0).value<ForwardResult>();
        QVERIFY2(out.error.isEmpty(), qPrintable(out.error));
        QCOMPARE(out.original.size(), QSize(28, 28));
        QVERIFY(out.original.isGrayscale());
        QVERIFY(out.message.contains("90x60") && out.message.contains("28x28"));
        // Columns 0-13 of the crop were white (x 15..44 of 90), 14-27 black.
        QVERIFY(qGray(out.original.pixel(3, 14)) > 240);
        QVERIFY(qGray(out.original.pixel(24, 14)) < 15);
        // A missing file is a message naming it.
        r.path = dir.filePath("missing.png");
        w.worker->requestForward(r);
        QVERIFY(waitCount(previews, 2, 30000));
        QVERIFY(previews.last().at(0).value<ForwardResult>().error.contains("missing.png"));
    }

    void toyChainRunsBesideTheImageChain() {
        WorkerFixture w;
        QVERIFY(w.load());
        ThreadSpy frames(w.worker, &SamplingWorker::frameReady);
        ThreadSpy stopped(w.worker, &SamplingWorker::chainStopped);
        ThreadSpy toy(w.worker, &SamplingWorker::toyFrame);
        w.startLong(400);
        QVERIFY(waitCount(frames, 2, 30000));
        ToyChainRequest r;
        r.model = QString::fromStdString(resolve_model("toy-moons").value());
        r.steps = 30;
        r.points = 500;
        const int id = w.worker->newToyRequest();
        QMetaObject::invokeMethod(w.worker, "startToyChain", Qt::QueuedConnection, Q_ARG(dlab::ui::ToyChainRequest, r), Q_ARG(int, id));
        QVERIFY(waitCount(toy, 30, 30000));
        QVERIFY(stopped.isEmpty());  // the image chain was not stopped by the toy chain
        for (int i = 0; i < 30; ++i) {
            const ToyFrame f = toy.at(i).at(0).value<ToyFrame>();
            QCOMPARE(f.index, i);
            QCOMPARE(f.x.size(), 500);
            QCOMPARE(f.last, i == 29);
        }
        const ToyFrame final = toy.last().at(0).value<ToyFrame>();
        QCOMPARE(final.finalX.size(), 500);
        // The moons have mean y² about 0.35, the starting noise 1: the final cloud is not noise.
        double spread = 0;
        for (double v : final.finalY) spread += v * v;
        QVERIFY2(spread / 500 < 0.7, qPrintable(QString::number(spread / 500)));  // N(0, 1): 1.0
        const int during = frames.size();
        QVERIFY(during > 2 && during < 400);
        w.worker->requestStop();
        QVERIFY(waitCount(stopped, 1, 30000));
    }

    void toyViewRunsAChainOffTheGuiThread() {
        WorkerFixture w;
        ToyView view(w.worker);
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
        // While it runs, the progress bar advances (the cloud is drawn live).
        auto* progress = view.findChild<QProgressBar*>();
        QVERIFY(progress);
        QTRY_VERIFY_WITH_TIMEOUT(progress->value() >= 5 && progress->maximum() == 1000, 30000);
        ThreadSpy workerFrames(w.worker, &SamplingWorker::toyFrame);
        view.cancel();
        const int after = waitUntilQuiet(workerFrames, 500, 10000);  // a step in flight may still land
        QTest::qWait(1000);
        QCOMPARE(workerFrames.size(), after);  // the worker stopped the chain
        QVERIFY(again.isEmpty());
        QVERIFY(progress->value() < 1000);
        QCOMPARE(view.frameCount(), 50);  // the previous chain is kept
    }

    void promptViewSaysWhatIsWrongAndRemembers() {
        ReverseView view(QStringLiteral("cpu"));
        view.resize(1100, 700);
        view.show();
        QSignalSpy ready(&view, &ReverseView::modelReady);
        QSignalSpy finished(&view, &ReverseView::chainFinished);
        view.useModel(QStringLiteral("fashion-mnist-text"), QString::fromStdString(resolve_model("fashion-mnist-text").value()));
        QTRY_VERIFY_WITH_TIMEOUT(!ready.isEmpty() && ready.last().at(0).value<ModelInfo>().text, 30000);
        view.setPrompt(QStringLiteral("a purple sandal with stripes"));
        QVERIFY2(view.promptProblem().contains(QStringLiteral("“purple”")), qPrintable(view.promptProblem()));
        view.newChain();
        QVERIFY(!view.isRunning());  // refused in the window, never sent to the worker
        view.setPrompt(QStringLiteral("a a a a a a a a a a a a a a a dress"));
        QVERIFY2(view.promptProblem().contains(QStringLiteral("16 words")), qPrintable(view.promptProblem()));
        view.setPrompt(QStringLiteral("a light coat"), QStringLiteral("a dark coat"));
        QCOMPARE(view.promptProblem(), QString());
        view.newChain();
        QVERIFY(view.isRunning());
        QVERIFY(finished.wait(60000));
        QCOMPARE(view.frames().last().tokenMaps.size(), 3);
        QCOMPARE(view.promptHistory().value(0), QStringLiteral("a light coat"));
    }

    void scoreDistillationRunsStopsAndContinues() {
        // The Score distillation tab: a short 2-D run reports every step with the ordinary samples
        // beside it; Continue adds steps to the same run; a 3-D run turns its camera.
        ReverseView reverse(QStringLiteral("cpu"));
        SdsView view(reverse.worker(), QStringLiteral("cpu"));
        QSignalSpy finished(&view, &SdsView::finished);
        view.configure(7, false, 100.0, 12);
        view.start();
        QVERIFY(view.running());
        QVERIFY(finished.wait(60000));
        QCOMPARE(view.frames().size(), 12);
        QVERIFY(!view.frames().first().ancestral.isNull());
        QCOMPARE(view.frames().last().image.size(), QSize(28, 28));
        view.configure(7, false, 100.0, 5);
        view.continueRun();
        QVERIFY(finished.wait(60000));
        QCOMPARE(view.frames().last().step, 17);
        QCOMPARE(view.frames().last().total, 17);
        // Stop lands within a step and keeps the run; Continue goes on from there.
        view.configure(7, false, 100.0, 5000);
        view.start();
        QTRY_VERIFY_WITH_TIMEOUT(view.frames().size() >= 3, 30000);
        view.stop();
        QVERIFY(finished.wait(30000));
        const int stoppedAt = view.frames().last().step;
        QVERIFY(stoppedAt < 5000 && !view.running());
        view.configure(7, false, 100.0, 2);
        view.continueRun();
        QVERIFY(finished.wait(60000));
        QCOMPARE(view.frames().last().step, stoppedAt + 2);
        view.configure(8, true, 100.0, 10);
        view.start();
        QVERIFY(finished.wait(60000));
        QCOMPARE(view.frames().size(), 2);  // a scene reports every 5th step
        QVERIFY(!view.frames().last().turning.isNull());
        QCOMPARE(view.frames().last().azimuth, 15.0);
    }

    void videoViewSamplesAClipAndExportsIt() {
        // The Video tab: a short chain of the bundled video model reports every step (x_t and x_0 as
        // strips of 16 frames), the grid grows a row per shown step, the finished clip carries its
        // frames and tracked path, and exports as an MP4; a stop lands within a step.
        ReverseView reverse(QStringLiteral("cpu"));
        VideoView view(reverse.worker(), QStringLiteral("cpu"));
        QSignalSpy finished(&view, &VideoView::finished);
        QCOMPARE(view.exportClip(QStringLiteral("/tmp/x.mp4")), QStringLiteral("there is no finished clip to export"));
        view.configure(1, 0, 3.0, 4);
        view.start();
        QVERIFY(view.running());
        QVERIFY(finished.wait(60000));
        QCOMPARE(view.steps().size(), 4);
        const VideoStep& last = view.steps().last();
        QCOMPARE(last.frames, 16);
        QCOMPARE(last.xt.size(), QSize(16 * 49 - 1, 48));
        QCOMPARE(last.x0.size(), last.xt.size());
        QCOMPARE(view.clip().size(), 16);
        QCOMPARE(view.clip().first().size(), QSize(48, 48));
        QCOMPARE(last.rows.size(), 16);
        QVERIFY(last.trackedDirection >= 0 && last.trackedDirection < 8);
        QCOMPARE(view.chainGrid().height(), 4 * (48 + 2) - 2);  // 4 steps: every one is a row
        for (int i = 0; i < 3; ++i) QVERIFY(view.steps()[i].t > view.steps()[i + 1].t);
        QTemporaryDir dir;
        const QString mp4 = dir.filePath("clip.mp4");
        QCOMPARE(view.exportClip(mp4), QString());
        QVERIFY(QFileInfo(mp4).size() > 1000);
        QVERIFY(!view.exportClip(QStringLiteral("/nonexistent-folder/clip.mp4")).isEmpty());
        // Stop within a step: the clip is not finished, nothing to export.
        view.configure(1, 0, 3.0, 1000);
        view.start();
        QTRY_VERIFY_WITH_TIMEOUT(view.steps().size() >= 1, 30000);
        view.stop();
        QVERIFY(finished.wait(30000));
        QVERIFY(!view.running() && view.steps().size() < 1000 && view.clip().isEmpty());
        // An image model is refused by name.
        QSignalSpy failed(reverse.worker(), &SamplingWorker::failed);
        VideoRequest r;
        r.model = QStringLiteral("default");
        QMetaObject::invokeMethod(reverse.worker(), "startVideo", Qt::QueuedConnection, Q_ARG(dlab::ui::VideoRequest, r),
                                  Q_ARG(int, reverse.worker()->newRequest()));
        QVERIFY(failed.wait(30000));
        QVERIFY2(failed.last().at(0).toString().contains("is not a video model"), qPrintable(failed.last().at(0).toString()));
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
