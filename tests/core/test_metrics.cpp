// Metrics against values known independently: the Frechet distance of Gaussians in closed form.
#include <cmath>

#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include "core/metrics.h"

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
};

QTEST_APPLESS_MAIN(TestMetrics)
#include "test_metrics.moc"
