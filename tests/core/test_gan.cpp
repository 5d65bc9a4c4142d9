// The GAN: its losses against closed forms, spectral normalisation against the true largest
// singular value, a short real run whose discriminator separates real from fake and whose
// generator loss falls, resume equal to an uninterrupted run bit for bit, files and bad input.
#include <QtTest/QtTest>

#include <cmath>

#include <torch/torch.h>

#include "core/data/datasets.h"
#include "core/gan/gan.h"
#include "core/gan/gan_trainer.h"
#include "core/io/safetensors.h"
#include "core/sampling/generate.h"
#include "tests/core/test_data.h"

using namespace dlab;

namespace {

LabelledData subset(int64_t n) { return test::fashion_subset(n, false); }

GanConfig small() {
    GanConfig c;
    c.base_channels = 8;
    c.z_dim = 16;
    return c;
}

GanTrainConfig quick(int64_t steps) {
    GanTrainConfig t;
    t.steps = steps;
    t.batch = 32;
    t.log_every = 5;
    t.checkpoint_every = 5;
    return t;
}

std::vector<QString> csvRows(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    std::vector<QString> rows;
    for (const QByteArray& line : f.readAll().split('\n'))
        if (!line.isEmpty()) rows.push_back(QString::fromUtf8(line));
    return rows;
}

}  // namespace

class TestGan : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void hingeLossesMatchClosedForms() {
        const at::Tensor real = at::tensor({2.0, 0.5, -1.0}), fake = at::tensor({-2.0, 0.0, 3.0});
        // L_D = mean(max(0, 1 - r)) + mean(max(0, 1 + f)) = (0 + 0.5 + 2)/3 + (0 + 1 + 4)/3
        QCOMPARE(hinge_d_loss(real, fake).item<double>(), (2.5 + 5.0) / 3.0);
        // L_G = -mean(f) = -(1/3)
        QVERIFY(std::abs(hinge_g_loss(fake).item<double>() + 1.0 / 3.0) < 1e-12);
        // A perfect discriminator (margins beyond 1) has zero loss.
        QCOMPARE(hinge_d_loss(at::tensor({1.5, 4.0}), at::tensor({-1.0, -7.0})).item<double>(), 0.0);
    }

    void slerpFollowsTheGreatCircle() {
        // Orthogonal unit vectors: slerp(a, b, t) = cos(t pi/2) a + sin(t pi/2) b, of unit norm.
        const at::Tensor a = at::tensor({1.0, 0.0, 0.0}), b = at::tensor({0.0, 1.0, 0.0});
        for (double t : {0.0, 0.25, 0.5, 1.0}) {
            const at::Tensor s = slerp(a, b, t);
            const double c = std::cos(t * M_PI / 2), si = std::sin(t * M_PI / 2);
            QVERIFY(at::allclose(s, at::tensor({c, si, 0.0}), 1e-9, 1e-12));
        }
        // Two Gaussian noises of one norm: every frame keeps it (a straight line would shrink it by
        // about 1/sqrt(2) in the middle), and the angle to a grows linearly.
        torch::manual_seed(0);
        const at::Tensor x = torch::randn({784}, at::kDouble), y0 = torch::randn({784}, at::kDouble);
        const at::Tensor y = y0 * (x.norm() / y0.norm());
        const double w = std::acos((x.dot(y) / (x.norm() * y.norm())).item<double>());
        for (double t : {0.1, 0.5, 0.9}) {
            const at::Tensor s = slerp(x, y, t);
            QVERIFY(std::abs(s.norm().item<double>() / x.norm().item<double>() - 1.0) < 1e-9);
            const double angle = std::acos((s.dot(x) / (s.norm() * x.norm())).item<double>());
            QVERIFY(std::abs(angle - t * w) < 1e-9);
        }
        QVERIFY(at::allclose(slerp(x, x, 0.3), x));  // parallel: no division by sin(0)
    }

    void spectralNormFindsTheLargestSingularValue() {
        torch::manual_seed(3);
        SpectralNorm sn(std::vector<int64_t>{6, 10});
        sn->train();
        for (int i = 0; i < 200; ++i) sn->normalized_weight();  // power iteration converges
        const at::Tensor w = sn->normalized_weight().detach();
        const double top = std::get<1>(at::linalg_svd(w, false)).max().item<double>();
        QVERIFY2(std::abs(top - 1.0) < 1e-3, qPrintable(QString::number(top)));
    }

    void shapesAndBadConfigs() {
        GanConfig c = small();
        Generator g(c);
        Discriminator d(c);
        const at::Tensor z = torch::randn({5, c.z_dim});
        const at::Tensor y = torch::tensor({0, 1, 2, 3, 9}, at::kLong);
        const at::Tensor x = g->forward(z, y);
        QCOMPARE(x.sizes().vec(), (std::vector<int64_t>{5, 1, 28, 28}));
        QVERIFY(x.abs().max().item<double>() <= 1.0);
        QCOMPARE(d->forward(x, y).sizes().vec(), std::vector<int64_t>{5});
        for (auto bad : {std::make_pair("image_size", 30), std::make_pair("channels", 2), std::make_pair("z_dim", 0),
                         std::make_pair("base_channels", 100000), std::make_pair("num_classes", -1)}) {
            nlohmann::json j = to_json(small());
            j[bad.first] = bad.second;
            auto r = gan_config_from_json(j);
            QVERIFY(!r);
            QVERIFY2(r.error().find(bad.first) != std::string::npos, r.error().c_str());
        }
        QVERIFY(!gan_config_from_json(nlohmann::json{{"z_dim", 1e300}}));
        QVERIFY(!gan_config_from_json(nlohmann::json{{"width", 3}}));
    }

    void aShortRunSeparatesAndTheGeneratorLearns() {
        QTemporaryDir dir;
        GanTrainConfig t = quick(60);
        t.log_every = 10;
        auto r = train_gan(small(), t, subset(512), c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New);
        QVERIFY2(r, r ? "" : r.error().c_str());
        const auto rows = csvRows(dir.filePath("loss.csv"));
        QCOMPARE(rows.front(), QStringLiteral("step,d_loss,g_loss,d_real_acc,d_fake_acc,diversity_ratio,images_per_s"));
        QCOMPARE(int(rows.size()), 1 + 6);
        auto field = [&](size_t row, int col) { return rows[row].split(QLatin1Char(',')).at(col).toDouble(); };
        // At the start the discriminator tells real from fake: its accuracies on a real and a fake
        // batch sum well above the 1.0 of a blind one (which calls everything real, or everything
        // fake); the generator's loss falls from the start.
        for (size_t i : {size_t(1), size_t(2)})
            QVERIFY2(field(i, 3) + field(i, 4) > 1.2, qPrintable(rows[i]));
        double gFirst = field(1, 2), gLow = gFirst;
        for (size_t i = 2; i < rows.size(); ++i) gLow = std::min(gLow, field(i, 2));
        QVERIFY2(gLow < gFirst, qPrintable(QString::number(gFirst) + " " + QString::number(gLow)));
        // The model file reads back as a GAN.
        auto m = load_gan(dir.filePath("model.safetensors").toStdString(), c10::Device(c10::kCPU));
        QVERIFY2(m, m ? "" : m.error().c_str());
        QCOMPARE(m->config.z_dim, small().z_dim);
        const at::Tensor x = gan_generate(*m->generator, 7, at::Tensor(), 1, 4);
        QCOMPARE(x.size(0), int64_t(7));
        QVERIFY(is_gan_file(dir.filePath("model.safetensors").toStdString()));
    }

    void resumeEqualsAnUninterruptedRun() {
        QTemporaryDir a, b;
        const LabelledData data = subset(256);
        const c10::Device cpu(c10::kCPU);
        QVERIFY(train_gan(small(), quick(20), data, cpu, a.path().toStdString(), TrainStart::New));
        QVERIFY(train_gan(small(), quick(10), data, cpu, b.path().toStdString(), TrainStart::New));
        auto resumed = train_gan(small(), quick(20), data, cpu, b.path().toStdString(), TrainStart::Resume);
        QVERIFY2(resumed, resumed ? "" : resumed.error().c_str());
        auto fa = load_safetensors(a.filePath("checkpoint.safetensors").toStdString());
        auto fb = load_safetensors(b.filePath("checkpoint.safetensors").toStdString());
        QVERIFY(fa && fb);
        QCOMPARE(fa->tensors.size(), fb->tensors.size());
        for (const auto& [name, t] : fa->tensors) QVERIFY2(at::equal(t, fb->tensors.at(name)), name.c_str());
        QCOMPARE(csvRows(a.filePath("loss.csv")).size(), csvRows(b.filePath("loss.csv")).size());
        // A new run over it is refused; another shape cannot resume it.
        QVERIFY(!train_gan(small(), quick(20), data, cpu, b.path().toStdString(), TrainStart::New));
        GanConfig other = small();
        other.z_dim = 8;
        auto r = train_gan(other, quick(30), data, cpu, b.path().toStdString(), TrainStart::Resume);
        QVERIFY(!r && r.error().find("another shape") != std::string::npos);
    }

    void badRunsAreMessages() {
        QTemporaryDir dir;
        const LabelledData data = subset(64);
        const c10::Device cpu(c10::kCPU);
        GanTrainConfig nan = quick(10);
        nan.lr_d = std::nan("");
        QVERIFY(!train_gan(small(), nan, data, cpu, dir.path().toStdString(), TrainStart::New));
        GanConfig wrong = small();
        wrong.image_size = 32;
        auto r = train_gan(wrong, quick(10), data, cpu, dir.path().toStdString(), TrainStart::New);
        QVERIFY(!r && r.error().find("28") != std::string::npos);
        QVERIFY(!load_gan(dir.filePath("nothing.safetensors").toStdString(), cpu));
    }
};

QTEST_MAIN(TestGan)
#include "test_gan.moc"
