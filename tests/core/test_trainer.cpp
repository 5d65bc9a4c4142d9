// The trainer on real data (a Fashion-MNIST subset, CPU): the loss falls, resume reproduces an
// uninterrupted run exactly, NaN stops training and keeps the last good checkpoint; the hybrid
// loss's terms against closed forms and a learned-variance run; settings files.
#include <cmath>

#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/data/datasets.h"
#include "core/guidance/guidance.h"
#include "core/training/losses.h"
#include "core/sampling/sampler.h"
#include "core/io/safetensors.h"
#include "core/training/kernel_profile.h"
#include "core/training/train_graph.h"
#include "core/training/train_support.h"
#include "core/training/trainer.h"
#include "tests/core/test_data.h"

using namespace dlab;

namespace {

LabelledData subset(int64_t n) { return test::fashion_subset(n); }

ModelConfig tiny() { return test::tiny_unet(); }

// Mean loss of the first ten and of the last ten reports.
std::pair<double, double> first_and_last_ten(const std::vector<double>& losses) {
    double first = 0, last = 0;
    for (size_t i = 0; i < 10; ++i) {
        first += losses[i] / 10;
        last += losses[losses.size() - 1 - i] / 10;
    }
    return {first, last};
}

TrainConfig fast(int64_t steps) {
    TrainConfig t;
    t.steps = steps;
    t.batch = 16;
    t.lr = 2e-3;
    t.warmup = 5;
    t.log_every = 1;
    t.checkpoint_every = 1000;
    t.seed = 42;
    return t;
}

}  // namespace

class TestTrainer : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void fashionMnistReader() {
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        QVERIFY2(test.ok(), test.error().c_str());
        QCOMPARE(test->x.sizes().vec(), (std::vector<int64_t>{10000, 1, 28, 28}));
        QCOMPARE(test->labels.size(0), int64_t(10000));
        QCOMPARE(test->x.min().item<float>(), -1.0f);
        QCOMPARE(test->x.max().item<float>(), 1.0f);
        // The test split is balanced: 1000 images per class.
        QVERIFY(at::equal(at::bincount(test->labels), at::full({10}, 1000, at::kLong)));
        QCOMPARE(test->class_names[9], std::string("Ankle boot"));
        auto missing = load_fashion_mnist("/nonexistent", true);
        QVERIFY(QString::fromStdString(missing.error()).contains("no such file"));
    }

    void damagedIdxFilesAreMessages() {
        // zlib reads plain files as well, so hand-made IDX bytes can stand in for the .gz files.
        auto bytes = [](std::initializer_list<int> values) {
            QByteArray b;
            for (int v : values) b.append(char(v));
            return b;
        };
        auto be32 = [&](uint32_t v) { return bytes({int(v >> 24), int(v >> 16), int(v >> 8), int(v)}); };
        auto write = [](const QString& path, const QByteArray& bytes) {
            QFile f(path);
            return f.open(QIODevice::WriteOnly) && f.write(bytes) == bytes.size();
        };
        auto idx = [&](uint32_t n, uint32_t h, uint32_t w, const QByteArray& labels) {
            return std::make_pair(be32(2051) + be32(n) + be32(h) + be32(w) + QByteArray(int(n * h * w), 'x'),
                                  be32(2049) + be32(n) + labels);
        };
        auto load = [&](const std::pair<QByteArray, QByteArray>& files) {
            QTemporaryDir dir;
            write(dir.filePath("t10k-images-idx3-ubyte.gz"), files.first);
            write(dir.filePath("t10k-labels-idx1-ubyte.gz"), files.second);
            auto r = load_fashion_mnist(dir.path().toStdString(), false);
            return r.ok() ? QString() : QString::fromStdString(r.error());
        };
        QCOMPARE(load(idx(3, 2, 2, bytes({0, 1, 9}))), QString());  // a well-formed tiny set loads
        const QString ten = load(idx(3, 2, 2, bytes({0, 10, 1})));
        QVERIFY2(ten.contains("label 10 of image 1"), qPrintable(ten));  // not silently the null class
        const QString big = load(idx(3, 2, 2, bytes({0, 255, 1})));
        QVERIFY2(big.contains("label 255"), qPrintable(big));
        const QString empty = load(idx(3, 0, 0, bytes({0, 1, 2})));
        QVERIFY2(empty.contains("image size 0x0"), qPrintable(empty));
        auto truncated = idx(3, 2, 2, bytes({0, 1, 2}));
        truncated.first.chop(5);
        QVERIFY2(load(truncated).contains("truncated"), qPrintable(load(truncated)));
        // A real .gz cut in half: zlib's own reason, read before the file is closed.
        QFile real(QString::fromStdString(fashion_mnist_dir()) + "/t10k-labels-idx1-ubyte.gz");
        QVERIFY(real.open(QIODevice::ReadOnly));
        const QByteArray gz = real.readAll();
        QTemporaryDir dir;
        QVERIFY(write(dir.filePath("t10k-images-idx3-ubyte.gz"), idx(3, 2, 2, QByteArray()).first));
        QVERIFY(write(dir.filePath("t10k-labels-idx1-ubyte.gz"), gz.left(gz.size() / 2)));
        auto cut = load_fashion_mnist(dir.path().toStdString(), false);
        QVERIFY(!cut.ok());
        QVERIFY2(QString::fromStdString(cut.error()).contains("t10k-labels-idx1-ubyte.gz"), cut.error().c_str());
        // A folder in the file's place.
        QTemporaryDir folder;
        QVERIFY(QDir(folder.path()).mkdir("t10k-images-idx3-ubyte.gz"));
        auto dirAsFile = load_fashion_mnist(folder.path().toStdString(), false);
        QVERIFY2(QString::fromStdString(dirAsFile.error()).contains("not a regular file"), dirAsFile.error().c_str());
    }

    void toySets() {
        for (const auto& name : toy_names()) {
            auto d = make_toy(name, 5000, 1);
            QVERIFY2(d.ok(), d.error().c_str());
            QCOMPARE(d->x.sizes().vec(), (std::vector<int64_t>{5000, 2}));
            QVERIFY(d->labels.max().item<int64_t>() < d->num_classes);
            QCOMPARE(int64_t(d->class_names.size()), d->num_classes);
            const double sd = d->x.std().item<double>();
            QVERIFY2(sd > 0.3 && sd < 3.0, qPrintable(QString("%1 sd %2").arg(QString::fromStdString(name)).arg(sd)));
        }
        QVERIFY(!make_toy("spiral-of-doom", 10, 1).ok());
    }

    void lossFalls() {
        QTemporaryDir dir;
        const LabelledData data = subset(512);
        std::vector<double> losses;
        TrainHooks hooks;
        hooks.on_progress = [&](const TrainProgress& p) { losses.push_back(p.loss); };
        auto r = train(tiny(), fast(60), data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New, hooks);
        QVERIFY2(r.ok(), r.error().c_str());
        QCOMPARE(losses.size(), size_t(60));
        const auto [first, last] = first_and_last_ten(losses);
        qInfo("mean loss of the first 10 steps %.3f, of the last 10 %.3f", first, last);
        QVERIFY(last < 0.6 * first);
        QVERIFY(QFileInfo::exists(dir.filePath("model.safetensors")));
        QFile log(dir.filePath("loss.csv"));
        QVERIFY(log.open(QIODevice::ReadOnly));
        QCOMPARE(QString::fromUtf8(log.readAll()).count('\n'), 61);
    }

    void dataWithASpreadIsDrawnAfreshEachStep() {
        // LabelledData::x_std (train --latent-sample): each step trains on x + x_std * noise. A zero
        // spread is exactly the plain run (the other draws of a step do not move); a real one changes
        // the losses, still trains, and resumes like any run; a spread of another shape is refused.
        const LabelledData plain = subset(64);
        auto losses_of = [&](const LabelledData& d, std::vector<double>& out) {
            QTemporaryDir dir;
            TrainHooks hooks;
            hooks.on_progress = [&](const TrainProgress& p) { out.push_back(p.loss); };
            return train(tiny(), fast(6), d, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New, hooks);
        };
        std::vector<double> a, z, s;
        QVERIFY(losses_of(plain, a).ok());
        LabelledData zero = plain;
        zero.x_std = at::zeros_like(plain.x);
        QVERIFY(losses_of(zero, z).ok());
        QCOMPARE(z, a);
        LabelledData spread = plain;
        spread.x_std = at::full_like(plain.x, 0.5);
        auto r = losses_of(spread, s);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().c_str());
        QCOMPARE(s.size(), a.size());
        QVERIFY(s != a);
        for (double l : s) QVERIFY(std::isfinite(l));
        LabelledData wrong = plain;
        wrong.x_std = at::zeros({3, 1, 28, 28});
        std::vector<double> w;
        auto refused = losses_of(wrong, w);
        QVERIFY(!refused.ok());
        QVERIFY2(QString::fromStdString(refused.error()).contains("x_std"), refused.error().c_str());
    }

    void resumeMatchesUninterruptedRun() {
        const LabelledData data = subset(256);
        QTemporaryDir a, b;
        auto full = train(tiny(), fast(20), data, c10::Device(c10::kCPU), a.path().toStdString(), TrainStart::New);
        QVERIFY(full.ok());
        // Interrupt after 8 steps, then resume to 20.
        std::atomic<bool> cancel{false};
        TrainHooks hooks;
        hooks.cancel = &cancel;
        hooks.on_progress = [&](const TrainProgress& p) {
            if (p.step == 8) cancel = true;
        };
        auto part = train(tiny(), fast(20), data, c10::Device(c10::kCPU), b.path().toStdString(), TrainStart::New, hooks);
        QVERIFY(part.ok());
        QVERIFY(part->cancelled);
        QCOMPARE(part->steps_done, int64_t(8));
        auto rest = train(tiny(), fast(20), data, c10::Device(c10::kCPU), b.path().toStdString(), TrainStart::Resume);
        QVERIFY2(rest.ok(), rest.error().c_str());
        QCOMPARE(rest->steps_done, int64_t(20));
        const auto fa = load_safetensors(a.filePath("checkpoint.safetensors").toStdString()).value();
        const auto fb = load_safetensors(b.filePath("checkpoint.safetensors").toStdString()).value();
        QCOMPARE(fa.tensors.size(), fb.tensors.size());
        double worst = 0;
        for (const auto& [k, v] : fa.tensors) {
            const double d = (v - fb.tensors.at(k)).abs().max().item<double>();
            if (d > 1e-6) qInfo("%s differs by %g", k.c_str(), d);
            worst = std::max(worst, d);
        }
        qInfo("largest difference between resumed and uninterrupted weights: %g", worst);
        QVERIFY(worst < 1e-6);
        // The loss log has one row per step, none repeated.
        QFile log(b.filePath("loss.csv"));
        QVERIFY(log.open(QIODevice::ReadOnly));
        QCOMPARE(QString::fromUtf8(log.readAll()).count('\n'), 21);
    }

    void nanStopsTrainingAndKeepsCheckpoint_data() {
        QTest::addColumn<int>("checkpointEvery");
        QTest::addColumn<int>("logEvery");
        QTest::newRow("caught at a logged loss") << 4 << 1;
        // Checkpoints more often than the loss is logged: the weights are checked before every
        // write, so the NaN step is caught at its checkpoint and the good one stays.
        QTest::newRow("caught at a checkpoint") << 1 << 1000;
    }
    void nanStopsTrainingAndKeepsCheckpoint() {
        QFETCH(int, checkpointEvery);
        QFETCH(int, logEvery);
        QTemporaryDir dir;
        LabelledData data = subset(64);
        TrainConfig t = fast(4);
        t.checkpoint_every = 4;
        QVERIFY(train(tiny(), t, data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New).ok());
        data.x.fill_(std::nan(""));
        t.steps = 8;
        t.checkpoint_every = checkpointEvery;
        t.log_every = logEvery;
        auto r = train(tiny(), t, data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::Resume);
        QVERIFY(!r.ok());
        QVERIFY2(QString::fromStdString(r.error()).contains("NaN"), r.error().c_str());
        QVERIFY2(QString::fromStdString(r.error()).contains("checkpoint (step 4)"), r.error().c_str());
        auto kept = load_safetensors(dir.filePath("checkpoint.safetensors").toStdString());
        QVERIFY(kept.ok());
        QCOMPARE(kept->metadata.at("step"), std::string("4"));
        for (const auto& [name, tensor] : kept->tensors)
            QVERIFY2(at::isfinite(tensor).all().item<bool>(), name.c_str());
    }

    void steadyThroughputLeavesOutTheFirstLogWindow() {
        // steady_images_per_s is the pace of the log windows after the first: the loss log's
        // images_per_s column of rows 2.. gives it back (images / the windows' summed seconds).
        QTemporaryDir dir;
        TrainConfig t = fast(6);
        t.log_every = 2;
        auto r = train(tiny(), t, subset(32), c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().c_str());
        QFile log(dir.filePath("loss.csv"));
        QVERIFY(log.open(QIODevice::ReadOnly));
        const QList<QByteArray> rows = log.readAll().trimmed().split('\n');
        QCOMPARE(rows.size(), 4);  // the header and three windows
        double images = 0, secs = 0;
        for (int i = 2; i < rows.size(); ++i) {
            const double ips = rows[i].split(',').at(3).toDouble();
            QVERIFY(ips > 0);
            images += 2.0 * t.batch;
            secs += 2.0 * t.batch / ips;
        }
        QVERIFY(r->steady_images_per_s > 0);
        QVERIFY2(std::abs(r->steady_images_per_s / (images / secs) - 1) < 1e-4,
                 qPrintable(QString("steady %1, from the log %2").arg(r->steady_images_per_s).arg(images / secs)));
        // One window only: no steady figure.
        QTemporaryDir one;
        t.log_every = 6;
        auto single = train(tiny(), t, subset(32), c10::Device(c10::kCPU), one.path().toStdString(), TrainStart::New);
        QVERIFY(single.ok());
        QCOMPARE(single->steady_images_per_s, 0.0);
    }

    void anEarlierRunIsNeverOverwrittenUnasked() {
        QTemporaryDir dir;
        const LabelledData data = subset(32);
        const std::string out = dir.path().toStdString();
        QVERIFY(train(tiny(), fast(4), data, c10::Device(c10::kCPU), out, TrainStart::New).ok());
        QFile log(dir.filePath("loss.csv"));
        QVERIFY(log.open(QIODevice::ReadOnly));
        const QByteArray before = log.readAll();
        log.close();
        auto again = train(tiny(), fast(4), data, c10::Device(c10::kCPU), out, TrainStart::New);
        QVERIFY(!again.ok());
        QVERIFY2(QString::fromStdString(again.error()).contains("--resume") &&
                     QString::fromStdString(again.error()).contains("--overwrite"), again.error().c_str());
        QVERIFY(log.open(QIODevice::ReadOnly));
        QCOMPARE(log.readAll(), before);  // untouched
        log.close();
        // Asked for explicitly, a new run replaces it.
        TrainConfig t = fast(2);
        t.log_every = 1;
        QVERIFY(train(tiny(), t, data, c10::Device(c10::kCPU), out, TrainStart::Overwrite).ok());
        auto ck = load_safetensors(dir.filePath("checkpoint.safetensors").toStdString());
        QVERIFY(ck.ok());
        QCOMPARE(ck->metadata.at("step"), std::string("2"));
    }

    void aBatchBeyondTheMemoryIsRefusedBeforeTheRun() {
        // A batch whose activations alone exceed the machine's memory: refused with the size tried
        // and one that fits, before the run folder is created.
        QTemporaryDir dir;
        const std::string out = dir.path().toStdString() + "/run";
        TrainConfig t = fast(2);
        t.batch = int64_t(1) << 40;
        auto r = train(tiny(), t, subset(32), c10::Device(c10::kCPU), out, TrainStart::New);
        QVERIFY(!r.ok());
        const QString e = QString::fromStdString(r.error());
        QVERIFY2(e.contains("train: a batch of 1099511627776") && e.contains("or fewer at a time") && e.contains("--batch"),
                 qPrintable(e));
        QVERIFY(!QFileInfo::exists(QString::fromStdString(out)));
    }

    void damagedCheckpointStepsAreMessagesAndLoseNothing() {
        QTemporaryDir dir;
        const LabelledData data = subset(32);
        const std::string out = dir.path().toStdString();
        TrainConfig t = fast(4);
        t.log_every = 1;
        QVERIFY(train(tiny(), t, data, c10::Device(c10::kCPU), out, TrainStart::New).ok());
        QFile log(dir.filePath("loss.csv"));
        QVERIFY(log.open(QIODevice::ReadOnly));
        const QByteArray before = log.readAll();
        log.close();
        QCOMPARE(before.count('\n'), 5);  // header + 4 rows
        const std::string ckpt = dir.filePath("checkpoint.safetensors").toStdString();
        for (const char* step : {"-5", "four", "", "4x", "99999999999999999999999"}) {
            auto file = load_safetensors(ckpt);
            QVERIFY(file.ok());
            TensorFile edited = file.value();
            edited.metadata["step"] = step;
            QVERIFY(save_safetensors(ckpt, edited).ok());
            t.steps = 6;
            auto r = train(tiny(), t, data, c10::Device(c10::kCPU), out, TrainStart::Resume);
            QVERIFY(!r.ok());
            QVERIFY2(QString::fromStdString(r.error()).contains("step") &&
                         QString::fromStdString(r.error()).contains("whole number"), r.error().c_str());
            QVERIFY(log.open(QIODevice::ReadOnly));
            QCOMPARE(log.readAll(), before);  // the log is not cut
            log.close();
            edited.metadata["step"] = "4";
            QVERIFY(save_safetensors(ckpt, edited).ok());
        }
        // No step at all.
        auto file = load_safetensors(ckpt);
        TensorFile edited = file.value();
        edited.metadata.erase("step");
        QVERIFY(save_safetensors(ckpt, edited).ok());
        auto r = train(tiny(), t, data, c10::Device(c10::kCPU), out, TrainStart::Resume);
        QVERIFY2(!r.ok() && QString::fromStdString(r.error()).contains("no 'step'"), r.error().c_str());
    }

    void resumeKeepsTheRunsSchedule() {
        QTemporaryDir dir;
        const LabelledData data = subset(32);
        const std::string out = dir.path().toStdString();
        QVERIFY(train(tiny(), fast(2), data, c10::Device(c10::kCPU), out, TrainStart::New).ok());
        ModelConfig other = tiny();
        other.schedule.kind = other.schedule.kind == ScheduleKind::Cosine ? ScheduleKind::Linear : ScheduleKind::Cosine;
        auto r = train(other, fast(4), data, c10::Device(c10::kCPU), out, TrainStart::Resume);
        QVERIFY(!r.ok());
        QVERIFY2(QString::fromStdString(r.error()).contains("schedule.kind"), r.error().c_str());
        ModelConfig eps = tiny();
        eps.prediction = PredictionType::V;
        auto p = train(eps, fast(4), data, c10::Device(c10::kCPU), out, TrainStart::Resume);
        QVERIFY2(!p.ok() && QString::fromStdString(p.error()).contains("prediction"), p.error().c_str());
        // The run's own settings resume.
        QVERIFY(train(tiny(), fast(4), data, c10::Device(c10::kCPU), out, TrainStart::Resume).ok());
    }

    void trainStepGraphDeclinesOffCuda() {
        // The CUDA-graph step is for CUDA devices in CUDA builds only: elsewhere it declines before
        // touching anything (undefined loss, failed()), and the trainer takes the eager step.
        QVERIFY(!TrainStepGraph::usable(c10::Device(c10::kCPU)));
        auto net = make_network(tiny().network);
        QVERIFY2(net.ok(), net.error().c_str());
        AdamW opt;
        opt.init(net.value()->parameters());
        const at::Tensor before = net.value()->parameters().front().clone();
        bool called = false;
        TrainStepGraph graph([&](const StepDraws&) { called = true; return at::zeros({}); }, net.value(), opt,
                             net.value()->parameters(), 1.0, 0.0, c10::Device(c10::kCPU));
        QVERIFY(graph.failed());
        QVERIFY(!graph.captured());
        StepDraws d{at::zeros({2}, at::kLong), at::zeros({2}, at::kLong), at::zeros({2, 1, 28, 28}),
                    at::zeros({2}, at::kBool), at::zeros({2}, at::kBool), at::Tensor()};
        QVERIFY(!graph.step(d, 1e-3, 1, 0.9).defined());
        QVERIFY(!called);
        QVERIFY(at::equal(before, net.value()->parameters().front()));
    }
    void kernelProfileIsAskedForExplicitly() {
        // DLAB_PROFILE_STEPS takes a plain positive count only; anything else profiles nothing.
        const QByteArray old = qgetenv("DLAB_PROFILE_STEPS");
        const std::pair<const char*, int64_t> cases[] = {{"30", 30}, {"0", 0}, {"-5", 0}, {"12x", 0}, {"", 0},
                                                          {"99999999999", 0}};
        for (const auto& [text, want] : cases) {
            qputenv("DLAB_PROFILE_STEPS", text);
            QCOMPARE(profile_steps_asked(), want);
        }
        qunsetenv("DLAB_PROFILE_STEPS");
        QCOMPARE(profile_steps_asked(), int64_t(0));
        if (!old.isNull()) qputenv("DLAB_PROFILE_STEPS", old);
        // DLAB_PROFILE_OPS (kernels tied to operators) is on for "1" only.
        const QByteArray old_ops = qgetenv("DLAB_PROFILE_OPS");
        for (const auto& [text, want] : {std::pair<const char*, bool>{"1", true}, {"0", false}, {"yes", false}, {"", false}}) {
            qputenv("DLAB_PROFILE_OPS", text);
            QCOMPARE(profile_by_operator_asked(), want);
        }
        qunsetenv("DLAB_PROFILE_OPS");
        QVERIFY(!profile_by_operator_asked());
        if (!old_ops.isNull()) qputenv("DLAB_PROFILE_OPS", old_ops);
        // Stopping what never started reports it instead of a table.
        KernelProfile p;
        QVERIFY(!p.running());
        QVERIFY(QString::fromStdString(p.stop(10, 1.0)).contains("no profile"));
    }
    void learningRateSchedules() {
        TrainConfig tc;
        tc.lr = 1e-3;
        tc.warmup = 100;
        tc.steps = 1101;  // the cosine spans steps 100..1100
        // Warm-up: linear from lr/warmup; then constant.
        QCOMPARE(learning_rate(tc, 0), 1e-5);
        QCOMPARE(learning_rate(tc, 49), 5e-4);
        QCOMPARE(learning_rate(tc, 99), 1e-3);
        QCOMPARE(learning_rate(tc, 1099), 1e-3);
        // Cosine: lr at the end of the warm-up, the mean of lr and lr_final x lr half way, lr_final x lr
        // at the last step and after it; falling throughout.
        tc.lr_decay = "cosine";
        tc.lr_final = 0.1;
        QCOMPARE(learning_rate(tc, 49), 5e-4);
        QVERIFY(std::abs(learning_rate(tc, 100) - 1e-3) < 1e-15);
        QVERIFY(std::abs(learning_rate(tc, 100 + 500) - 0.55e-3) < 1e-12);
        QVERIFY(std::abs(learning_rate(tc, 1100) - 1e-4) < 1e-15);
        QVERIFY(std::abs(learning_rate(tc, 5000) - 1e-4) < 1e-15);
        for (int64_t s = 100; s + 37 <= 1100; s += 37) QVERIFY(learning_rate(tc, s + 37) < learning_rate(tc, s));
        // A settings file names it; an unknown decay is refused by name.
        ModelConfig mc = tiny();
        TrainConfig fromFile;
        QVERIFY(apply_settings_json(nlohmann::json::parse(R"({"training": {"lr_decay": "cosine", "lr_final": 0.2}})"), mc, fromFile).ok());
        QCOMPARE(QString::fromStdString(fromFile.lr_decay), QStringLiteral("cosine"));
        QCOMPARE(fromFile.lr_final, 0.2);
        QTemporaryDir dir;
        TrainConfig bad = fast(2);
        bad.lr_decay = "step";
        auto r = train(tiny(), bad, subset(16), c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New);
        QVERIFY2(!r.ok() && r.error().find("'step'") != std::string::npos, r.ok() ? "accepted" : r.error().c_str());
    }

    void initFromAModelFile() {
        // A new run starts from another run's weights: its first loss is the trained model's, far
        // below a random start's; another network is refused by name before anything is written.
        const LabelledData data = subset(256);
        QTemporaryDir a, b, c, d;
        QVERIFY(train(tiny(), fast(60), data, c10::Device(c10::kCPU), a.path().toStdString(), TrainStart::New).ok());
        auto first_loss = [&](const TrainConfig& tc, const QString& out) {
            double first = -1;
            TrainHooks hooks;
            hooks.on_progress = [&](const TrainProgress& p) {
                if (first < 0) first = p.loss;
            };
            auto r = train(tiny(), tc, data, c10::Device(c10::kCPU), out.toStdString(), TrainStart::New, hooks);
            if (!r) qFatal("%s", r.error().c_str());
            return first;
        };
        TrainConfig init = fast(1);
        init.lr = 1e-9;
        const double random_start = first_loss(init, b.path());
        init.init_from = a.filePath("model.safetensors").toStdString();
        const double trained_start = first_loss(init, c.path());
        qInfo("first loss: random weights %.3f, from the trained model %.3f", random_start, trained_start);
        QVERIFY(trained_start < 0.6 * random_start);
        // The started run's model equals its source after a step of lr ~ 0.
        const auto src = load_safetensors(init.init_from).value();
        const auto dst = load_safetensors(c.filePath("model.safetensors").toStdString()).value();
        double worst = 0;
        for (const auto& [k, v] : src.tensors)
            if (dst.tensors.count(k) && v.is_floating_point()) worst = std::max(worst, (v - dst.tensors.at(k)).abs().max().item<double>());
        QVERIFY2(worst < 1e-3, std::to_string(worst).c_str());
        ModelConfig wider = tiny();
        wider.network.base_channels *= 2;
        auto r = train(wider, init, data, c10::Device(c10::kCPU), d.path().toStdString(), TrainStart::New);
        QVERIFY(!r.ok());
        QVERIFY2(r.error().find("base_channels") != std::string::npos, r.error().c_str());
        QVERIFY(!QFileInfo::exists(d.filePath("loss.csv")));
        init.init_from = d.filePath("none.safetensors").toStdString();
        auto missing = train(tiny(), init, data, c10::Device(c10::kCPU), d.path().toStdString(), TrainStart::New);
        QVERIFY2(!missing.ok() && missing.error().find("none.safetensors") != std::string::npos, missing.error().c_str());
    }

    void vlbTermsMatchClosedForms() {
        // KL of two scalar Gaussians: log(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2.
        const double m1 = 0.3, s1 = 0.7, m2 = -0.4, s2 = 1.3;
        const double expect = std::log(s2 / s1) + (s1 * s1 + (m1 - m2) * (m1 - m2)) / (2 * s2 * s2) - 0.5;
        auto sc = [](double v) { return at::full({1}, v, at::kDouble); };
        const double kl = normal_kl(sc(m1), sc(2 * std::log(s1)), sc(m2), sc(2 * std::log(s2))).item<double>();
        QVERIFY(std::abs(kl - expect) < 1e-12);
        QVERIFY(std::abs(normal_kl(sc(m1), sc(0.2), sc(m1), sc(0.2)).item<double>()) < 1e-15);
        // The 256 bins of the discretised Gaussian hold all the probability.
        const at::Tensor levels = at::arange(256, at::kDouble) / 127.5 - 1.0;
        for (double mean : {-0.9, 0.0, 0.37}) {
            for (double log_scale : {std::log(0.01), std::log(0.2), 0.0}) {
                const at::Tensor lp = discretized_gaussian_log_likelihood(levels, at::full_like(levels, mean),
                                                                          at::full_like(levels, log_scale));
                const double total = lp.exp().sum().item<double>();
                QVERIFY2(std::abs(total - 1.0) < 1e-6, qPrintable(QString::number(total, 'g', 10)));
            }
        }
        // Learned variance: v = -1 gives beta~, v = 1 gives beta, v = 0 their geometric mean.
        const at::Tensor lb = sc(std::log(0.02)), lbt = sc(std::log(0.01));
        QCOMPARE(learned_log_variance(sc(-1), lb, lbt).item<double>(), std::log(0.01));
        QCOMPARE(learned_log_variance(sc(1), lb, lbt).item<double>(), std::log(0.02));
        QVERIFY(std::abs(learned_log_variance(sc(0), lb, lbt).item<double>() - std::log(std::sqrt(0.02 * 0.01))) < 1e-12);
    }

    void ddpmUsesTheLearnedVariance() {
        auto sched = NoiseSchedule::create(ScheduleConfig{}).value();
        SamplerConfig sc;
        sc.kind = SamplerKind::Ddpm;
        sc.steps = 10;
        auto sampler = make_sampler(sched, sc).value();
        const at::Tensor x = at::randn({4, 1, 6, 6});
        auto run = [&](double v) {
            Denoiser d = [v](const at::Tensor& xt, int64_t) {
                X0Eps p;
                p.x0 = at::zeros_like(xt);
                p.eps = xt;
                if (!std::isnan(v)) p.var_v = at::full_like(xt, v);
                return p;
            };
            at::Generator gen = make_generator(3);
            return sampler->step(8, x, d, gen).x_prev;
        };
        // Same noise draw z in every run: x_prev = mu + sigma z.
        at::Generator g = make_generator(3);
        const at::Tensor z = at::randn(x.sizes(), g, at::TensorOptions().dtype(at::kFloat));
        const int64_t t = sampler->timesteps()[8], s = sampler->timesteps()[9];
        const double ab_t = sched.alpha_bar(t), ab_s = sched.alpha_bar(s), beta = 1 - ab_t / ab_s;
        const double var_tilde = (1 - ab_s) / (1 - ab_t) * beta;
        const at::Tensor fixed = run(std::nan(""));
        const at::Tensor mu = fixed - std::sqrt(var_tilde) * z;
        // v = -1 is the fixed posterior variance; v = 1 the step's beta; v = 0 the geometric mean.
        QVERIFY(at::allclose(run(-1.0), fixed, 1e-5, 1e-6));
        QVERIFY(at::allclose(run(1.0), mu + std::sqrt(beta) * z, 1e-5, 1e-5));
        QVERIFY(at::allclose(run(0.0), mu + std::pow(beta * var_tilde, 0.25) * z, 1e-5, 1e-5));
        QVERIFY(beta > 1.5 * var_tilde);  // the two ends really differ at this step
    }

    void hybridLossTrainsTheVariance() {
        QTemporaryDir dir;
        const LabelledData data = subset(512);
        ModelConfig mc = tiny();
        mc.network.learn_sigma = true;
        std::vector<double> losses;
        TrainHooks hooks;
        hooks.on_progress = [&](const TrainProgress& p) { losses.push_back(p.loss); };
        auto r = train(mc, fast(60), data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New, hooks);
        QVERIFY2(r.ok(), r.error().c_str());
        const auto [first, last] = first_and_last_ten(losses);
        qInfo("hybrid loss: first 10 steps %.3f, last 10 %.3f", first, last);
        QVERIFY(last < 0.6 * first);
        auto m = load_model(dir.filePath("model.safetensors").toStdString(), c10::Device(c10::kCPU));
        QVERIFY2(m.ok(), m.error().c_str());
        QVERIFY(m->config.network.learn_sigma);
        torch::NoGradGuard ng;
        const at::Tensor out = m->network->forward(at::randn({2, 1, 28, 28}), at::full({2}, 500, at::kLong),
                                                   at::zeros({2}, at::kLong));
        QCOMPARE(out.size(1), int64_t(2));
        // The denoiser hands the variance channel to the samplers.
        Denoiser d = make_denoiser(plain_denoiser(
                                       [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) {
                                           return m->network->forward(x, t, y);
                                       },
                                       at::zeros({2}, at::kLong)),
                                   NoiseSchedule::create(m->config.schedule).value(), m->config.prediction);
        const X0Eps p = d(at::randn({2, 1, 28, 28}), 500);
        QVERIFY(p.var_v.defined());
        QCOMPARE(p.eps.size(1), int64_t(1));
    }

    void settingsFile() {
        ModelConfig mc = tiny();
        TrainConfig tc = fast(5);
        auto j = nlohmann::json::parse(R"({"network": {"base_channels": 16, "learn_sigma": true},
                                          "schedule": {"kind": "linear", "timesteps": 500},
                                          "prediction": "v", "training": {"lr": 0.0005, "batch": 7}})");
        QVERIFY(apply_settings_json(j, mc, tc).ok());
        QCOMPARE(mc.network.base_channels, int64_t(16));
        QVERIFY(mc.network.learn_sigma);
        QVERIFY(mc.schedule.kind == ScheduleKind::Linear);
        QCOMPARE(mc.schedule.timesteps, int64_t(500));
        QVERIFY(mc.prediction == PredictionType::V);
        QCOMPARE(tc.lr, 0.0005);
        QCOMPARE(tc.batch, int64_t(7));
        QCOMPARE(tc.steps, int64_t(5));  // untouched
        auto unknown = apply_settings_json(nlohmann::json::parse(R"({"training": {"lrr": 1}})"), mc, tc);
        QVERIFY(!unknown.ok());
        QVERIFY2(QString::fromStdString(unknown.error()).contains("lrr"), unknown.error().c_str());
        auto wrong = apply_settings_json(nlohmann::json::parse(R"({"network": {"base_channels": "big"}})"), mc, tc);
        QVERIFY(!wrong.ok());
        auto bad = apply_settings_json(nlohmann::json::parse(R"({"network": {"base_channels": 12}})"), mc, tc);
        QVERIFY2(!bad.ok() && QString::fromStdString(bad.error()).contains("GroupNorm"), bad.error().c_str());
    }

    void hugeNumbersInJsonAreMessages() {
        // Found by fuzz/fuzz_model_config: a float far beyond int64 for an integer field was
        // converted with undefined behaviour (UBSan: float-cast-overflow).
        ModelConfig mc;
        TrainConfig tc;
        auto st = apply_settings_json(nlohmann::json::parse(R"({"network": {"base_channels": 1.7e83}})"), mc, tc);
        QVERIFY2(!st.ok() && QString::fromStdString(st.error()).contains("out of range"), st.ok() ? "" : st.error().c_str());
        nlohmann::json config = to_json(tiny());
        config["network"]["groups"] = -1e300;
        auto parsed = model_config_from_json(config);
        QVERIFY2(!parsed.ok() && QString::fromStdString(parsed.error()).contains("out of range"),
                 parsed.ok() ? "" : parsed.error().c_str());
        config["network"]["groups"] = 8.0;  // an integral float in range is still read
        QVERIFY(model_config_from_json(config).ok());
    }

    void badSettings() {
        QTemporaryDir dir;
        const LabelledData data = subset(32);
        TrainConfig t = fast(0);
        QVERIFY(!train(tiny(), t, data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New).ok());
        ModelConfig wrong = tiny();
        wrong.network.num_classes = 3;
        auto r = train(wrong, fast(2), data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New);
        QVERIFY(QString::fromStdString(r.error()).contains("classes"));
        auto nores = train(tiny(), fast(2), data, c10::Device(c10::kCPU), dir.filePath("fresh").toStdString(), TrainStart::Resume);
        QVERIFY(QString::fromStdString(nores.error()).contains("resume"));
        TrainConfig bf = fast(2);
        bf.bf16 = true;
        auto nobf = train(tiny(), bf, data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New);
        QVERIFY2(!nobf.ok() && QString::fromStdString(nobf.error()).contains("CUDA"), nobf.error().c_str());
    }
};

QTEST_APPLESS_MAIN(TestTrainer)
#include "test_trainer.moc"
