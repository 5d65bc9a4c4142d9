// Metrics against values known independently: the Frechet distance of Gaussians in closed form,
// Inception Score limits, and golden numbers from tests/golden/reference_metrics.py (plain Python)
// for precision/recall, IS and diversity; TorchScript feature networks.
#include <cmath>

#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include <torch/script.h>

#include "core/evaluation/feature_net.h"
#include "core/evaluation/metrics.h"

using namespace dlab;

namespace {

FeatureStats exact(const at::Tensor& mean, const at::Tensor& cov) {
    FeatureStats s;
    s.mean = mean.to(at::kDouble);
    s.cov = cov.to(at::kDouble);
    s.count = 1;
    return s;
}

}  // namespace

class TestMetrics : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void frechetOfDiagonalGaussians() {
        // For diagonal covariances: ||mu1 - mu2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
        const at::Tensor m1 = at::tensor({0.0, 1.0, 2.0}, at::kDouble), m2 = at::tensor({1.0, 1.0, 0.0}, at::kDouble);
        const at::Tensor a = at::tensor({1.0, 4.0, 0.25}, at::kDouble), b = at::tensor({9.0, 1.0, 0.25}, at::kDouble);
        const double want = 1.0 + 4.0 + (1 - 3) * (1 - 3) + (2 - 1) * (2 - 1) + 0.0;
        QVERIFY(std::abs(frechet_distance(exact(m1, at::diag(a)), exact(m2, at::diag(b))) - want) < 1e-9);
    }

    void frechetIsRotationInvariantAndZeroOnItself() {
        // Rotating both Gaussians by the same orthogonal Q leaves the distance unchanged; the
        // rotated covariances are not diagonal, so this exercises the full matrix square root.
        at::manual_seed(3);
        const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({5, 5}, at::kDouble)));
        const at::Tensor a = at::diag(at::tensor({1.0, 2.0, 3.0, 0.5, 0.1}, at::kDouble));
        const at::Tensor b = at::diag(at::tensor({2.0, 2.0, 1.0, 0.2, 0.4}, at::kDouble));
        const at::Tensor m1 = at::randn({5}, at::kDouble), m2 = at::randn({5}, at::kDouble);
        const double plain = frechet_distance(exact(m1, a), exact(m2, b));
        const double rotated = frechet_distance(exact(at::matmul(q, m1), at::matmul(at::matmul(q, a), q.t())),
                                                exact(at::matmul(q, m2), at::matmul(at::matmul(q, b), q.t())));
        QVERIFY(std::abs(plain - rotated) < 1e-9);
        QVERIFY(std::abs(frechet_distance(exact(m1, a), exact(m1, a))) < 1e-9);
    }

    void sampleStatsConverge() {
        // Two samples of the same Gaussian: the distance shrinks with N (about D^2 / N).
        at::manual_seed(5);
        const at::Tensor x = at::randn({20000, 4}, at::kDouble), y = at::randn({20000, 4}, at::kDouble);
        const double fd = frechet_distance(feature_stats(x), feature_stats(y));
        QVERIFY(fd >= -1e-9 && fd < 0.01);
        const FeatureStats s = feature_stats(x * 2 + 3);
        QVERIFY((s.mean - 3).abs().max().item<double>() < 0.05);
        QVERIFY((s.cov - 4 * at::eye(4, at::kDouble)).abs().max().item<double>() < 0.15);
    }

    void agreement() {
        const at::Tensor logits = at::tensor({0.1, 0.9, 0.8, 0.2, 0.3, 0.7}, at::kDouble).view({3, 2});
        QCOMPARE(class_agreement(logits, at::tensor({1, 0, 0})), 2.0 / 3.0);
    }
    void inceptionScoreLimits() {
        // Confident, balanced predictions over K classes: IS = K; identical predictions: IS = 1.
        const int64_t K = 5;
        const at::Tensor confident = at::eye(K, at::kDouble).repeat({4, 1}) * 60.0;
        QVERIFY(std::abs(inception_score(confident, 1).mean - double(K)) < 1e-9);
        const at::Tensor same = at::randn({1, K}, at::kDouble).repeat({20, 1});
        QVERIFY(std::abs(inception_score(same, 2).mean - 1.0) < 1e-9);
    }

    void goldenPrecisionRecallIsDiversity() {
        // The sets of tests/golden/reference_metrics.py.
        const at::Tensor real = at::tensor({0.0, 0.0, 1.0, 0.2, 0.3, 1.1, 2.0, 2.0, -1.0, 0.5, 0.5, -0.7, 1.5, 1.0,
                                            -0.4, -1.2, 2.2, 0.1, 0.9, 1.9, -1.5, -0.3, 0.1, 0.6}, at::kDouble).view({12, 2});
        const at::Tensor fake = at::tensor({0.2, 0.1, 3.5, 3.5, 1.1, 0.9, -0.8, 0.2, 0.4, -0.5, 5.0, -2.0, 1.9, 1.7,
                                            0.0, 1.0, -2.5, 2.5, 0.7, 0.3}, at::kDouble).view({10, 2});
        const at::Tensor logits = at::tensor({2.0, 0.1, -1.0, 0.3, 0.2, 1.5, 0.0, -0.5, -1.0, 0.0, 3.0, 0.2,
                                              0.5, 0.5, 0.5, 0.5, 1.0, -2.0, 0.0, 2.5, 0.0, 0.3, -0.2, 1.1}, at::kDouble).view({6, 4});
        const at::Tensor labels = at::tensor({0, 1, 0, 1, 1, 0, 2, 0, 2, 1}, at::kLong);
        const auto pr3 = precision_recall(real, fake, 3);
        QVERIFY(std::abs(pr3.precision - 0.7) < 1e-12);
        QVERIFY(std::abs(pr3.recall - 1.0) < 1e-12);
        const auto pr1 = precision_recall(real, fake, 1);
        QVERIFY(std::abs(pr1.precision - 0.7) < 1e-12);
        QVERIFY(std::abs(pr1.recall - 0.916666666667) < 1e-9);
        const auto is = inception_score(logits, 2);
        QVERIFY(std::abs(is.mean - 1.381956249198) < 1e-9);
        QVERIFY(std::abs(is.std - 0.252066999552) < 1e-9);
        QVERIFY(std::abs(mean_pairwise_distance(fake, labels) - 3.581873930130) < 1e-9);
    }

    void precisionRecallOfIdenticalAndDisjointSets() {
        const at::Tensor a = at::randn({300, 8}, at::kDouble);
        const auto same = precision_recall(a, a, 3);
        QCOMPARE(same.precision, 1.0);
        QCOMPARE(same.recall, 1.0);
        const auto far = precision_recall(a, a + 100.0, 3);
        QCOMPARE(far.precision, 0.0);
        QCOMPARE(far.recall, 0.0);
        // Blocked k-NN radii equal the brute-force ones across a block boundary (N > 1024).
        const at::Tensor b = at::randn({1100, 3}, at::kDouble);
        const at::Tensor r = kth_neighbour_distances(b, 3);
        const at::Tensor d = at::cdist(b, b);
        const at::Tensor brute = std::get<0>(at::sort(d, 1)).select(1, 3);
        QVERIFY(at::allclose(r, brute, 1e-9, 1e-9));
    }

    void nearestDistancesMatchBruteForce() {
        // 1500 queries (two blocks) against 300 reference rows of 784 values in [-1, 1], like images.
        at::manual_seed(11);
        const at::Tensor ref = at::rand({300, 1, 28, 28}, at::kDouble) * 2 - 1;
        const at::Tensor q = at::rand({1500, 1, 28, 28}, at::kDouble) * 2 - 1;
        const at::Tensor d = nearest_distances(q, ref);
        QCOMPARE(d.size(0), int64_t(1500));
        const at::Tensor brute = at::cdist(q.flatten(1), ref.flatten(1)).amin(1);
        const double worst = (d - brute).abs().max().item<double>();
        QVERIFY2(worst < 1e-3, qPrintable(QString::number(worst)));
        // A query that is a reference row is at distance 0 (to float32 round-off of the cross term).
        QVERIFY(nearest_distances(ref.narrow(0, 7, 3), ref).abs().max().item<double>() < 2e-2);
    }

    void copyStatsOfCopiesAndOfNewDraws() {
        // The "training set" and "unseen" images drawn from one law: copies near 0.01, ratio near 1;
        // the training rows themselves as samples: all copies, ratio 0; a far-off set: no copies, ratio > 1.
        at::manual_seed(5);
        const at::Tensor train = at::randn({2000, 16}, at::kDouble);
        const at::Tensor unseen = nearest_distances(at::randn({4000, 16}, at::kDouble), train);
        const CopyStats fresh = copy_stats(nearest_distances(at::randn({4000, 16}, at::kDouble), train), unseen);
        QVERIFY2(fresh.copies > 0.004 && fresh.copies < 0.02, qPrintable(QString::number(fresh.copies)));
        QVERIFY(std::abs(fresh.nn_ratio - 1.0) < 0.05);
        const CopyStats copied = copy_stats(nearest_distances(train.narrow(0, 0, 500), train), unseen);
        QCOMPARE(copied.copies, 1.0);
        QVERIFY(copied.nn_ratio < 1e-3);
        const CopyStats far = copy_stats(nearest_distances(at::randn({500, 16}, at::kDouble) + 3.0, train), unseen);
        QCOMPARE(far.copies, 0.0);
        QVERIFY(far.nn_ratio > 1.5);
        // The threshold is the unseen set's 1st percentile.
        QVERIFY(std::abs(fresh.threshold - at::quantile(unseen, 0.01).item<double>()) < 1e-12);
    }

    void torchScriptFeatureNetwork() {
        // A TorchScript module written and saved here stands for a user's exported network.
        QTemporaryDir dir;
        const std::string path = dir.filePath("features.pt").toStdString();
        torch::jit::Module m("Features");
        m.define(R"(
def forward(self, x):
    pooled = x.mean([2, 3])
    spatial = x[:, :, ::2, ::2]
    return (pooled, spatial, pooled * 2.0)
)");
        m.save(path);
        auto net = torchscript_feature_net(path, c10::Device(c10::kCPU), 16, 3);
        QVERIFY2(net.ok(), net.error().c_str());
        const at::Tensor grey = at::rand({5, 1, 28, 28}) * 2 - 1;
        const Features f = net.value()->extract(grey);
        QCOMPARE(f.pooled.sizes().vec(), (std::vector<int64_t>{5, 3}));   // grey repeated to 3 channels
        QCOMPARE(f.spatial.sizes().vec(), (std::vector<int64_t>{5, 3 * 8 * 8}));  // resized to 16
        QVERIFY(at::allclose(f.logits, f.pooled * 2));
        // Bilinear resizing keeps the mean of a constant image.
        const Features c = net.value()->extract(at::full({2, 1, 28, 28}, 0.25));
        QVERIFY(at::allclose(c.pooled, at::full({2, 3}, 0.25)));
        // Not TorchScript, or the wrong interface: clear errors naming the file.
        QFile junk(dir.filePath("junk.pt"));
        QVERIFY(junk.open(QIODevice::WriteOnly));
        junk.write("no");
        junk.close();
        auto bad = torchscript_feature_net(dir.filePath("junk.pt").toStdString(), c10::Device(c10::kCPU), 16, 3);
        QVERIFY(!bad.ok());
        QVERIFY2(QString::fromStdString(bad.error()).contains("junk.pt"), bad.error().c_str());
        torch::jit::Module wrong("Wrong");
        wrong.define("def forward(self, x):\n    return 3\n");
        wrong.save(dir.filePath("wrong.pt").toStdString());
        auto w = torchscript_feature_net(dir.filePath("wrong.pt").toStdString(), c10::Device(c10::kCPU), 16, 3);
        QVERIFY2(!w.ok() && QString::fromStdString(w.error()).contains("neither a tensor nor a tuple"), w.error().c_str());
    }
};

QTEST_APPLESS_MAIN(TestMetrics)
#include "test_metrics.moc"
