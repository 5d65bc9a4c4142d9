// The trainer on real data (a Fashion-MNIST subset, CPU): the loss falls, resume reproduces an
// uninterrupted run exactly, NaN stops training and keeps the last good checkpoint.
#include <cmath>

#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/datasets.h"
#include "core/safetensors.h"
#include "core/trainer.h"

using namespace dlab;

namespace {

LabelledData subset(int64_t n) {
    auto all = load_fashion_mnist(fashion_mnist_dir(), true);
    if (!all) qFatal("%s", all.error().c_str());
    LabelledData d = all.value();
    d.x = d.x.narrow(0, 0, n).clone();
    d.labels = d.labels.narrow(0, 0, n).clone();
    return d;
}

ModelConfig tiny() {
    ModelConfig c;
    c.network.base_channels = 8;
    c.network.channel_mult = {1, 2};
    c.network.attention_resolutions = {14};
    c.network.num_classes = 10;
    return c;
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
        auto r = train(tiny(), fast(60), data, c10::Device(c10::kCPU), dir.path().toStdString(), false, hooks);
        QVERIFY2(r.ok(), r.error().c_str());
        QCOMPARE(losses.size(), size_t(60));
        double first = 0, last = 0;
        for (int i = 0; i < 10; ++i) {
            first += losses[size_t(i)] / 10;
            last += losses[losses.size() - 1 - size_t(i)] / 10;
        }
        qInfo("mean loss of the first 10 steps %.3f, of the last 10 %.3f", first, last);
        QVERIFY(last < 0.6 * first);
        QVERIFY(QFileInfo::exists(dir.filePath("model.safetensors")));
        QFile log(dir.filePath("loss.csv"));
        QVERIFY(log.open(QIODevice::ReadOnly));
        QCOMPARE(QString::fromUtf8(log.readAll()).count('\n'), 61);
    }

    void resumeMatchesUninterruptedRun() {
        const LabelledData data = subset(256);
        QTemporaryDir a, b;
        auto full = train(tiny(), fast(20), data, c10::Device(c10::kCPU), a.path().toStdString(), false);
        QVERIFY(full.ok());
        // Interrupt after 8 steps, then resume to 20.
        std::atomic<bool> cancel{false};
        TrainHooks hooks;
        hooks.cancel = &cancel;
        hooks.on_progress = [&](const TrainProgress& p) {
            if (p.step == 8) cancel = true;
        };
        auto part = train(tiny(), fast(20), data, c10::Device(c10::kCPU), b.path().toStdString(), false, hooks);
        QVERIFY(part.ok());
        QVERIFY(part->cancelled);
        QCOMPARE(part->steps_done, int64_t(8));
        auto rest = train(tiny(), fast(20), data, c10::Device(c10::kCPU), b.path().toStdString(), true);
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

    void nanStopsTrainingAndKeepsCheckpoint() {
        QTemporaryDir dir;
        LabelledData data = subset(64);
        TrainConfig t = fast(4);
        t.checkpoint_every = 4;
        QVERIFY(train(tiny(), t, data, c10::Device(c10::kCPU), dir.path().toStdString(), false).ok());
        data.x.fill_(std::nan(""));
        t.steps = 8;
        auto r = train(tiny(), t, data, c10::Device(c10::kCPU), dir.path().toStdString(), true);
        QVERIFY(!r.ok());
        QVERIFY2(QString::fromStdString(r.error()).contains("NaN"), r.error().c_str());
        auto kept = load_safetensors(dir.filePath("checkpoint.safetensors").toStdString());
        QVERIFY(kept.ok());
        QCOMPARE(kept->metadata.at("step"), std::string("4"));
    }

    void badSettings() {
        QTemporaryDir dir;
        const LabelledData data = subset(32);
        TrainConfig t = fast(0);
        QVERIFY(!train(tiny(), t, data, c10::Device(c10::kCPU), dir.path().toStdString(), false).ok());
        ModelConfig wrong = tiny();
        wrong.network.num_classes = 3;
        auto r = train(wrong, fast(2), data, c10::Device(c10::kCPU), dir.path().toStdString(), false);
        QVERIFY(QString::fromStdString(r.error()).contains("classes"));
        auto nores = train(tiny(), fast(2), data, c10::Device(c10::kCPU), dir.filePath("fresh").toStdString(), true);
        QVERIFY(QString::fromStdString(nores.error()).contains("resume"));
    }
};

QTEST_APPLESS_MAIN(TestTrainer)
#include "test_trainer.moc"
