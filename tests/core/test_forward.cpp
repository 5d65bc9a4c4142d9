// The forward process q(x_t | x_0), the posterior and the eps/x0/v conversions, on every device
// present (CPU always; CUDA where available).
#include <cmath>

#include <QtTest/QtTest>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "core/forward/schedule.h"

using namespace dlab;

namespace {

NoiseSchedule cosine(int64_t T = 1000) {
    ScheduleConfig c;
    c.timesteps = T;
    return NoiseSchedule::create(c).value();
}

QVector<c10::Device> devices() {
    QVector<c10::Device> d{c10::Device(c10::kCPU)};
    if (torch::cuda::is_available()) d.push_back(c10::Device(c10::kCUDA, 0));
    return d;
}

}  // namespace

class TestForward : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void marginalMomentsMatchClosedForm() {
        const auto s = cosine();
        for (const auto& dev : devices()) {
            at::manual_seed(1234);
            const int64_t N = 200000;
            const at::TensorOptions o = at::TensorOptions().device(dev).dtype(at::kDouble);
            // Three pixels with different clean values.
            const at::Tensor x0 = at::tensor({0.8, -0.3, 0.0}, o).view({1, 3}).expand({N, 3});
            for (int64_t t : {0, 100, 500, 900, 999}) {
                const at::Tensor eps = at::randn({N, 3}, o);
                const at::Tensor tt = at::full({N}, t, at::TensorOptions().dtype(at::kLong).device(dev));
                const at::Tensor xt = s.add_noise(x0, eps, tt);
                QCOMPARE(xt.device(), dev);
                const double ab = s.alpha_bar(t);
                const at::Tensor mean = xt.mean(0).cpu(), var = xt.var(0).cpu();
                for (int k = 0; k < 3; ++k) {
                    const double want_mean = std::sqrt(ab) * x0[0][k].item<double>();
                    const double want_var = 1.0 - ab;
                    // 5 standard errors of the mean and of the variance estimate.
                    const double se_mean = std::sqrt(want_var / N) + 1e-12;
                    const double se_var = want_var * std::sqrt(2.0 / (N - 1)) + 1e-15;
                    QVERIFY2(std::abs(mean[k].item<double>() - want_mean) < 5 * se_mean,
                             qPrintable(QString("t=%1 mean %2 want %3").arg(t).arg(mean[k].item<double>()).arg(want_mean)));
                    QVERIFY2(std::abs(var[k].item<double>() - want_var) < 5 * se_var,
                             qPrintable(QString("t=%1 var %2 want %3").arg(t).arg(var[k].item<double>()).arg(want_var)));
                }
            }
        }
    }

    void conversionsRoundTrip() {
        const auto s = cosine();
        for (const auto& dev : devices()) {
            at::manual_seed(7);
            const at::TensorOptions o = at::TensorOptions().device(dev).dtype(at::kFloat);
            const at::Tensor x0 = at::rand({4, 1, 8, 8}, o) * 2 - 1;
            const at::Tensor eps = at::randn({4, 1, 8, 8}, o);
            const at::Tensor t = at::tensor({0, 250, 600, 998}, at::kLong).to(dev);
            const at::Tensor xt = s.add_noise(x0, eps, t);
            QVERIFY(at::allclose(s.eps_from_x0(xt, x0, t), eps, 1e-3, 1e-3));
            const at::Tensor v = s.v_from(x0, eps, t);
            QVERIFY(at::allclose(s.x0_from_v(xt, v, t), x0, 1e-4, 1e-4));
            QVERIFY(at::allclose(s.eps_from_v(xt, v, t), eps, 1e-4, 1e-4));
            // x0 from eps is ill-conditioned where abar is tiny; check where it is not.
            const at::Tensor early = t.slice(0, 0, 3);
            QVERIFY(at::allclose(s.x0_from_eps(xt.slice(0, 0, 3), eps.slice(0, 0, 3), early),
                                 x0.slice(0, 0, 3), 1e-3, 1e-3));
            for (PredictionType p : {PredictionType::Eps, PredictionType::X0, PredictionType::V}) {
                const at::Tensor out = p == PredictionType::Eps ? eps : p == PredictionType::X0 ? x0 : v;
                const X0Eps s3 = s.split_prediction(p, out.slice(0, 0, 3), xt.slice(0, 0, 3), early);
                QVERIFY(at::allclose(s3.x0, x0.slice(0, 0, 3), 2e-3, 2e-3));
                QVERIFY(at::allclose(s3.eps, eps.slice(0, 0, 3), 2e-3, 2e-3));
                // One timestep for the whole batch (what a sampler step uses): the same values as
                // the per-sample tables give for that timestep, to the last bit.
                for (int64_t one : {int64_t(0), int64_t(250), int64_t(998)}) {
                    const X0Eps a = s.split_prediction(p, out, xt, one);
                    const X0Eps b = s.split_prediction(p, out, xt, at::full({4}, one, at::kLong).to(dev));
                    QVERIFY2(at::equal(a.x0, b.x0) && at::equal(a.eps, b.eps), qPrintable(QString("t=%1").arg(one)));
                }
            }
            QVERIFY_THROWS_EXCEPTION(std::exception, s.split_prediction(PredictionType::V, v, xt, int64_t(1000)));
        }
    }

    void posteriorTensorsMatchScalars() {
        const auto s = cosine(100);
        for (const auto& dev : devices()) {
            const at::TensorOptions o = at::TensorOptions().device(dev).dtype(at::kDouble);
            const at::Tensor x0 = at::full({2, 3}, 0.5, o), xt = at::full({2, 3}, -0.25, o);
            const at::Tensor t = at::tensor({1, 70}, at::kLong);
            const at::Tensor m = s.posterior_mean(x0, xt, t).cpu();
            const at::Tensor v = s.posterior_variance_like(t, xt).cpu();
            for (int i = 0; i < 2; ++i) {
                const int64_t tt = i == 0 ? 1 : 70;
                const double ab = s.alpha_bar(tt), abp = s.alpha_bar_prev(tt), b = s.beta(tt);
                const double want = std::sqrt(abp) * b / (1 - ab) * 0.5 +
                                    std::sqrt(1 - b) * (1 - abp) / (1 - ab) * -0.25;
                QVERIFY(std::abs(m[i][2].item<double>() - want) < 1e-12);
                QVERIFY(std::abs(v[i][0].item<double>() - (1 - abp) / (1 - ab) * b) < 1e-15);
            }
        }
    }

    void predictionNames() {
        for (PredictionType p : {PredictionType::Eps, PredictionType::X0, PredictionType::V})
            QCOMPARE(int(*parse_prediction_type(to_string(p))), int(p));
        QCOMPARE(int(*parse_prediction_type("v_prediction")), int(PredictionType::V));
        QVERIFY(!parse_prediction_type("score").has_value());
    }

    void badTimestepsThrow() {
        const auto s = cosine(10);
        const at::Tensor x = at::zeros({2, 4});
        QVERIFY_THROWS_EXCEPTION(c10::Error, s.add_noise(x, x, at::tensor({0, 10}, at::kLong)));
        QVERIFY_THROWS_EXCEPTION(c10::Error, s.add_noise(x, x, at::tensor({0}, at::kLong)));
    }
};

QTEST_APPLESS_MAIN(TestForward)
#include "test_forward.moc"
