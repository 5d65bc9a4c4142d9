// Training as a GUI job and the run history: a short CPU training run on the training worker
// reports progress, draws EMA samples, pauses, stops with a checkpoint and resumes to the end;
// bad requests fail with messages; the history survives a restart, marks deleted files and
// unreadable records; the training view records its run.
#include <QtTest/QtTest>

#include <QFile>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QThread>

#include "core/io/model_io.h"
#include "ui/views/batch_view.h"
#include "ui/views/history_view.h"
#include "ui/views/main_window.h"
#include "ui/common/run_history.h"
#include "ui/signal_wait.h"
#include "ui/views/training_view.h"
#include "ui/jobs/training_worker.h"
#include "core/gan/gan.h"

using namespace dlab::ui;

namespace {

struct TrainingFixture {
    QThread thread;
    TrainingWorker* worker = new TrainingWorker;
    TrainingFixture() {
        worker->moveToThread(&thread);
        QObject::connect(&thread, &QThread::finished, worker, &QObject::deleteLater);
        thread.start();
    }
    ~TrainingFixture() {
        worker->setPaused(false);
        worker->requestStop();
        thread.quit();
        thread.wait();
    }
    void run(const TrainingRequest& r) {
        QMetaObject::invokeMethod(worker, "run", Qt::QueuedConnection, Q_ARG(dlab::ui::TrainingRequest, r));
    }
};

// A 2-D toy run: small enough for a test, the same trainer and worker as an image run.
TrainingRequest toyRequest(const QString& out, qint64 steps) {
    TrainingRequest r;
    r.dataset = QStringLiteral("toy:moons");
    r.sizePreset = QStringLiteral("tiny");
    r.steps = steps;
    r.batch = 64;
    r.lr = 1e-3;
    r.logEvery = 10;
    r.sampleEvery = 100;
    r.checkpointEvery = 100;
    r.outDir = out;
    return r;
}

qint64 stepOf(const QList<QVariant>& signalArgs) { return signalArgs.at(0).value<TrainingUpdate>().step; }

}  // namespace

class TestTraining : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

    void runPauseStopResume() {
        QTemporaryDir dir;
        const QString out = dir.path() + QStringLiteral("/run");
        TrainingFixture f;
        ThreadSpy progress(f.worker, &TrainingWorker::progress);
        ThreadSpy samples(f.worker, &TrainingWorker::samplesReady);
        ThreadSpy finished(f.worker, &TrainingWorker::finished);
        ThreadSpy started(f.worker, &TrainingWorker::started);
        f.run(toyRequest(out, 100000));
        QVERIFY(waitCount(started, 1, 30000));
        QVERIFY(started.at(0).at(0).toString().contains(QStringLiteral("toy:moons")));
        // Progress arrives every 10 steps with increasing steps and finite losses.
        QVERIFY(waitCount(progress, 5, 60000));
        for (int i = 1; i < 5; ++i) QCOMPARE(stepOf(progress.at(i)), stepOf(progress.at(i - 1)) + 10);
        const TrainingUpdate u = progress.at(4).at(0).value<TrainingUpdate>();
        QCOMPARE(u.total, qint64(100000));
        QVERIFY(std::isfinite(u.loss) && u.loss > 0);
        QVERIFY(u.lr > 0 && u.imagesPerS > 0 && u.etaS > 0);

        // Pause: no progress while paused, then it continues.
        f.worker->setPaused(true);
        const int before = waitUntilQuiet(progress, 500, 10000);  // a step in flight may still report
        QTest::qWait(600);
        QCOMPARE(progress.size(), before);
        f.worker->setPaused(false);
        QVERIFY(waitCount(progress, before + 2, 30000));

        // EMA samples: a scatter image for the 2-D set at a multiple of 100 steps.
        QVERIFY(waitCount(samples, 1, 60000));
        QVERIFY(!samples.at(0).at(0).value<QImage>().isNull());
        QCOMPARE(samples.at(0).at(1).toLongLong() % 100, 0);

        // Stop: the outcome says stopped and a checkpoint and a model are on disk.
        f.worker->requestStop();
        QVERIFY(waitCount(finished, 1, 60000));
        const TrainingOutcome stopped = finished.at(0).at(0).value<TrainingOutcome>();
        QVERIFY2(stopped.ok, qPrintable(stopped.message));
        QVERIFY(stopped.stopped);
        QVERIFY(stopped.stepsDone > 0 && stopped.stepsDone < 100000);
        QVERIFY(QFile::exists(out + QStringLiteral("/checkpoint.safetensors")));
        QVERIFY(QFile::exists(stopped.modelPath));
        QVERIFY(QFile::exists(out + QStringLiteral("/request.json")));

        // Resume with a shorter total: it continues from the checkpoint's step to the end.
        progress.clear();
        TrainingRequest more = toyRequest(out, stopped.stepsDone + 40);
        more.resume = true;
        f.run(more);
        QVERIFY(waitCount(finished, 2, 60000));
        const TrainingOutcome done = finished.at(1).at(0).value<TrainingOutcome>();
        QVERIFY2(done.ok, qPrintable(done.message));
        QVERIFY(!done.stopped);
        QCOMPARE(done.stepsDone, stopped.stepsDone + 40);
        QVERIFY(!progress.isEmpty());
        QVERIFY(stepOf(progress.first()) > stopped.stepsDone);
        QCOMPARE(stepOf(progress.last()), stopped.stepsDone + 40);
    }

    void imageRunDrawsAnEmaGrid() {
        QTemporaryDir dir;
        TrainingFixture f;
        ThreadSpy samples(f.worker, &TrainingWorker::samplesReady);
        ThreadSpy finished(f.worker, &TrainingWorker::finished);
        TrainingRequest r = toyRequest(dir.path() + QStringLiteral("/img"), 12);
        r.dataset = QStringLiteral("fashion-mnist");
        r.batch = 8;
        r.sampleEvery = 6;
        f.run(r);
        QVERIFY(waitCount(finished, 1, 120000));
        const TrainingOutcome o = finished.at(0).at(0).value<TrainingOutcome>();
        QVERIFY2(o.ok, qPrintable(o.message));
        // Steps 6 and 12; two samples per class: 10 columns and 2 rows of 28x28 with 2-pixel gaps.
        QCOMPARE(samples.size(), 2);
        QCOMPARE(samples.at(1).at(1).toLongLong(), qint64(12));
        const QImage grid = samples.at(1).at(0).value<QImage>();
        QCOMPARE(grid.width(), 10 * 28 + 11 * 2);
        QCOMPARE(grid.height(), 2 * 28 + 3 * 2);
    }

    void badRequestsFailWithMessages() {
        QTemporaryDir dir;
        TrainingFixture f;
        ThreadSpy finished(f.worker, &TrainingWorker::finished);
        TrainingRequest r = toyRequest(dir.path() + QStringLiteral("/a"), 10);
        r.dataset = QStringLiteral("toy:nosuchset");
        f.run(r);
        r.dataset = QStringLiteral("toy:moons");
        r.sizePreset = QStringLiteral("huge");
        f.run(r);
        r.sizePreset = QStringLiteral("tiny");
        r.outDir = dir.path() + QStringLiteral("/b");
        r.resume = true;  // nothing to resume from
        f.run(r);
        QVERIFY(waitCount(finished, 3, 30000));
        const QStringList expect{QStringLiteral("nosuchset"), QStringLiteral("huge"), QStringLiteral("checkpoint.safetensors")};
        for (int i = 0; i < 3; ++i) {
            const TrainingOutcome o = finished.at(i).at(0).value<TrainingOutcome>();
            QVERIFY(!o.ok);
            QVERIFY2(o.message.contains(expect[i]), qPrintable(o.message));
        }
    }

    void historySurvivesRestartAndMarksDeletedFiles() {
        QTemporaryDir dir;
        const QString root = dir.path() + QStringLiteral("/runs");
        QString first, second;
        {
            RunHistory h(root);
            RunRecord a = h.create(QStringLiteral("training"), QStringLiteral("first"), QJsonObject{{QStringLiteral("steps"), 5}}, 7);
            QVERIFY(!a.id.isEmpty());
            QFile(a.folder + QStringLiteral("/model.safetensors")).open(QIODevice::WriteOnly);
            a.outputs << QStringLiteral("model.safetensors") << QStringLiteral("loss.csv");  // loss.csv never written
            a.status = QStringLiteral("finished");
            QVERIFY(h.save(a));
            RunRecord b = h.create(QStringLiteral("samples"), QStringLiteral("second"), {}, 3);
            QVERIFY(b.id != a.id);
            first = a.id;
            second = b.id;
        }
        // A restart: a new object on the same folder sees both, with their fields.
        RunHistory h(root);
        QVector<RunRecord> runs = h.list();
        QCOMPARE(runs.size(), 2);
        const RunRecord& a = runs[0].id == first ? runs[0] : runs[1];
        QCOMPARE(a.title, QStringLiteral("first"));
        QCOMPARE(a.seed, quint64(7));
        QCOMPARE(a.status, QStringLiteral("finished"));
        QCOMPARE(a.parameters.value(QStringLiteral("steps")).toInt(), 5);
        QCOMPARE(h.missingOutputs(a), QStringList{QStringLiteral("loss.csv")});

        // A broken record is listed as unreadable; the others still load.
        QDir(root).mkdir(QStringLiteral("zz-broken"));
        QFile bad(root + QStringLiteral("/zz-broken/run.json"));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("{ not json");
        bad.close();
        runs = h.list();
        QCOMPARE(runs.size(), 3);
        int unreadable = 0;
        for (const RunRecord& r : runs) unreadable += r.status == QStringLiteral("unreadable");
        QCOMPARE(unreadable, 1);

        // The view shows deleted files as such, not as an error.
        HistoryView view(&h);
        QCOMPARE(view.runs().size(), 3);
        bool marked = false;
        for (int i = 0; i < view.runs().size(); ++i)
            if (view.runs()[i].id == first) marked = view.statusText(i).contains(QStringLiteral("1 of 2 files deleted"));
        QVERIFY(marked);

        QVERIFY(h.remove(second));
        QVERIFY(!h.remove(QStringLiteral("../x")));
        QCOMPARE(h.list().size(), 2);
    }

    void recordsAndRequestsAreCheckedBeforeUse() {
        // A request survives its own JSON unchanged and without a note.
        TrainingRequest good = toyRequest(QStringLiteral("/tmp/x"), 1234);
        good.seed = 18446744073709551615ull;
        good.lr = 3e-4;
        good.snrShift = 4;
        QStringList problems;
        const TrainingRequest back = TrainingRequest::fromJson(good.toJson(), &problems);
        QVERIFY2(problems.isEmpty(), qPrintable(problems.join(QLatin1Char('\n'))));
        QCOMPARE(back.toJson(), good.toJson());

        // A hand-edited run.json: every field out of range or of the wrong type keeps its default
        // and is named (steps 1e300 used to be cast to qint64: undefined behaviour).
        const QJsonObject hostile{{QStringLiteral("dataset"), QStringLiteral("/etc")},
                                  {QStringLiteral("image_size"), QStringLiteral("99999")},
                                  {QStringLiteral("channels"), 2},
                                  {QStringLiteral("schedule"), QStringLiteral("quadratic")},
                                  {QStringLiteral("snr_shift"), 0},
                                  {QStringLiteral("steps"), 1e300},
                                  {QStringLiteral("batch"), -5},
                                  {QStringLiteral("lr"), QStringLiteral("fast")},
                                  {QStringLiteral("device"), QStringLiteral("tpu")},
                                  {QStringLiteral("seed"), QStringLiteral("-1")},
                                  {QStringLiteral("sample_every"), 1.5},
                                  {QStringLiteral("out"), 42}};
        problems.clear();
        const TrainingRequest r = TrainingRequest::fromJson(hostile, &problems);
        const TrainingRequest defaults;
        QCOMPARE(r.toJson(), defaults.toJson());
        QCOMPARE(problems.size(), hostile.size());
        for (const QString& key : hostile.keys())
            QVERIFY2(problems.filter(key + QLatin1Char(':')).size() == 1, qPrintable(key));
        // A request saved before the SNR shift existed reads as no shift, without a note.
        QJsonObject older = good.toJson();
        older.remove(QStringLiteral("snr_shift"));
        problems.clear();
        QCOMPARE(TrainingRequest::fromJson(older, &problems).snrShift, 1.0);
        QVERIFY(problems.isEmpty());

        // Run records: an unknown kind is unreadable (never offered for resume); wrong field types
        // are noted in the message and replaced.
        RunRecord bad = RunHistory::parseRecord(R"({"kind": "rm -rf", "status": "finished"})", QStringLiteral("a"), QStringLiteral("/x/a"));
        QCOMPARE(bad.status, QStringLiteral("unreadable"));
        QVERIFY(bad.message.contains(QStringLiteral("kind")));
        RunRecord odd = RunHistory::parseRecord(
            R"({"kind": "training", "status": "stopped", "seed": 1e300, "outputs": {"a": 1}, "title": ["x"], "parameters": 5})",
            QStringLiteral("b"), QStringLiteral("/x/b"));
        QCOMPARE(odd.status, QStringLiteral("stopped"));
        QCOMPARE(odd.title, QStringLiteral("b"));
        QCOMPARE(odd.seed, quint64(0));
        QVERIFY(odd.outputs.isEmpty());
        for (const char* field : {"seed", "outputs", "title", "parameters"})
            QVERIFY2(odd.message.contains(QLatin1String(field)), qPrintable(odd.message));

        // Resuming such a record is refused with the reason, before any training starts.
        QTemporaryDir dir;
        RunHistory h(dir.path() + QStringLiteral("/runs"));
        RunRecord run = h.create(QStringLiteral("training"), QStringLiteral("edited"), hostile, 1);
        QFile(run.folder + QStringLiteral("/checkpoint.safetensors")).open(QIODevice::WriteOnly);
        run.status = QStringLiteral("stopped");
        QVERIFY(h.save(run));
        TrainingView view(&h, false);
        view.resumeRun(h.load(run.id));
        QVERIFY(!view.isRunning());
        QVERIFY2(view.statusText().contains(QStringLiteral("steps: 1e+300")), qPrintable(view.statusText()));
    }

    void trainingViewTrainsAGanWithBothLosses() {
        QTemporaryDir dir;
        RunHistory h(dir.path() + QStringLiteral("/runs"));
        TrainingView view(&h, false);
        QSignalSpy finished(&view, &TrainingView::finished);
        QSignalSpy trained(&view, &TrainingView::modelTrained);
        TrainingRequest r;
        r.family = QStringLiteral("gan");
        r.dataset = QStringLiteral("fashion-mnist");
        r.sizePreset = QStringLiteral("tiny");
        r.steps = 40;
        r.batch = 16;
        r.lr = 2e-4;
        r.sampleEvery = 20;
        view.setRequest(r);
        QCOMPARE(view.request().family, QStringLiteral("gan"));
        view.start();
        QVERIFY(waitCount(finished, 1, 60000));
        const auto outcome = finished.first().first().value<TrainingOutcome>();
        QVERIFY2(outcome.ok, qPrintable(outcome.message));
        QCOMPARE(outcome.stepsDone, qint64(40));
        // Both losses are plotted, one point per log step (every 10), and a grid of samples is shown.
        QCOMPARE(view.plottedLoss(0).size(), 4);
        QCOMPARE(view.plottedLoss(1).size(), 4);
        QVERIFY(!view.samples().isNull());
        QCOMPARE(trained.size(), 0);  // a GAN does not join the reverse chain's model list
        const RunRecord run = h.list().first();
        QFile log(run.folder + QStringLiteral("/loss.csv"));
        QVERIFY(log.open(QIODevice::ReadOnly));
        QVERIFY(log.readLine().startsWith("step,d_loss,g_loss"));
        QVERIFY(dlab::is_gan_file((run.folder + QStringLiteral("/model.safetensors")).toStdString()));
    }

    void windowListsAndReopensRecordedRuns() {
        // A batch recorded in an earlier session: the window lists it and reopens its grid in Batch.
        QTemporaryDir dir;
        qputenv("DLAB_DATA_DIR", dir.path().toUtf8());
        RunHistory h(RunHistory::defaultRoot());
        RunRecord run = h.create(QStringLiteral("samples"), QStringLiteral("an old grid"), QJsonObject{{QStringLiteral("seed"), 4}}, 4);
        QImage grid(40, 30, QImage::Format_Grayscale8);
        grid.fill(200);
        QVERIFY(grid.save(run.folder + QStringLiteral("/grid.png")));
        run.outputs << QStringLiteral("grid.png");
        run.status = QStringLiteral("finished");
        QVERIFY(h.save(run));
        MainWindowOptions o{QStringLiteral("CPU"), 2, QStringLiteral("test")};
        MainWindow w(o);
        QCOMPARE(w.history()->root(), h.root());
        QCOMPARE(w.historyView()->runs().size(), 1);
        QCOMPARE(w.historyView()->statusText(0), QStringLiteral("finished"));
        Q_EMIT w.historyView()->openRun(w.historyView()->runs()[0]);
        QCOMPARE(w.currentTab(), 2);
        QCOMPARE(w.batchView()->grid().size(), QSize(40, 30));
        // Its grid deleted: listed as such, and reopening says so instead of failing.
        QFile::remove(run.folder + QStringLiteral("/grid.png"));
        w.historyView()->refresh();
        QVERIFY(w.historyView()->statusText(0).contains(QStringLiteral("files deleted")));
        qunsetenv("DLAB_DATA_DIR");
    }

    void trainingViewRecordsItsRun() {
        QTemporaryDir dir;
        RunHistory h(dir.path() + QStringLiteral("/runs"));
        TrainingView view(&h, false);
        QSignalSpy finished(&view, &TrainingView::finished);
        QSignalSpy trained(&view, &TrainingView::modelTrained);
        TrainingRequest r = toyRequest(QString(), 60);
        r.snrShift = 4;
        view.setRequest(r);
        QCOMPARE(view.request().dataset, QStringLiteral("toy:moons"));
        QCOMPARE(view.request().snrShift, 4.0);
        QCOMPARE(view.request().steps, qint64(60));
        view.start();
        QVERIFY(view.isRunning());
        QCOMPARE(h.list().size(), 1);
        QCOMPARE(h.list()[0].status, QStringLiteral("running"));
        QVERIFY(waitCount(finished, 1, 60000));
        QVERIFY(!view.isRunning());
        QCOMPARE(trained.size(), 1);
        QVERIFY(!view.losses().isEmpty());
        const RunRecord run = h.list()[0];
        QCOMPARE(run.kind, QStringLiteral("training"));
        QCOMPARE(run.status, QStringLiteral("finished"));
        QVERIFY(run.outputs.contains(QStringLiteral("model.safetensors")));
        QVERIFY(h.missingOutputs(run).isEmpty());
        QCOMPARE(TrainingRequest::fromJson(run.parameters).steps, qint64(60));
        // The SNR shift reached the trained model's schedule.
        auto model = dlab::load_model((run.folder + QStringLiteral("/model.safetensors")).toStdString(), c10::Device(c10::kCPU));
        QVERIFY2(model.ok(), model.ok() ? "" : model.error().c_str());
        QCOMPARE(model->config.schedule.snr_shift, 4.0);
    }
};

QTEST_MAIN(TestTraining)
#include "test_training.moc"
