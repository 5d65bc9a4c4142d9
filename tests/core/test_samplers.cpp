// Sampler conformance: with the *exact* denoiser of Gaussian (and Gaussian-mixture) data, every
// sampler must reproduce the data's mean and covariance. Plus golden runs against an independent
// Python reference (tests/golden/reference_samplers.py) and reproducibility by seed.
#include <cmath>

#include <QtTest/QtTest>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "core/guidance/guidance.h"
#include "core/sampling/sampler.h"
#include "golden/reference_samplers.h"

using namespace dlab;

namespace {

// A mixture of 2-D Gaussians: weights w_k, means m_k, covariances C_k.
struct Mixture {
    std::vector<double> w;
    std::vector<at::Tensor> mean;  // [2] float64
    std::vector<at::Tensor> cov;   // [2,2] float64

    at::Tensor total_mean() const {
        at::Tensor m = at::zeros({2}, at::kDouble);
        for (size_t k = 0; k < w.size(); ++k) m += w[k] * mean[k];
        return m;
    }
    at::Tensor total_cov() const {
        const at::Tensor mu = total_mean();
        at::Tensor c = at::zeros({2, 2}, at::kDouble);
        for (size_t k = 0; k < w.size(); ++k) c += w[k] * (cov[k] + at::outer(mean[k], mean[k]));
        return c - at::outer(mu, mu);
    }
};

// The exact eps prediction E[eps | x_t] = -sqrt(1 - abar) grad log p_t(x_t), where
// p_t = sum_k w_k N(sqrt(abar) m_k, abar C_k + (1 - abar) I).
Denoiser exact_denoiser(const Mixture& mix, const NoiseSchedule& schedule) {
    return [mix, schedule](const at::Tensor& x, int64_t t) {
        const double ab = schedule.alpha_bar(t);
        const at::Tensor xd = x.to(at::kDouble);
        const int64_t B = x.size(0);
        std::vector<at::Tensor> logp, grad;
        for (size_t k = 0; k < mix.w.size(); ++k) {
            const at::Tensor C = ab * mix.cov[k] + (1 - ab) * at::eye(2, at::kDouble);
            const at::Tensor Ci = at::inverse(C);
            const at::Tensor d = xd - std::sqrt(ab) * mix.mean[k].unsqueeze(0);  // [B,2]
            const at::Tensor md = at::matmul(d, Ci);                             // C^-1 d (C symmetric)
            logp.push_back(std::log(mix.w[k]) - 0.5 * (md * d).sum(1) - 0.5 * std::log(at::det(C).item<double>()));
            grad.push_back(-md);
        }
        const at::Tensor r = at::softmax(at::stack(logp, 1), 1);  // [B,K] responsibilities
        at::Tensor score = at::zeros({B, 2}, at::kDouble);
        for (size_t k = 0; k < mix.w.size(); ++k) score += r.select(1, int64_t(k)).unsqueeze(1) * grad[k];
        const at::Tensor eps = (-std::sqrt(1 - ab) * score).to(x.scalar_type());
        const at::Tensor x0 = (x - std::sqrt(1 - ab) * eps) / std::sqrt(ab);
        X0Eps p;
        p.x0 = x0;
        p.eps = eps;
        return p;
    };
}

NoiseSchedule cosine() { return NoiseSchedule::create(ScheduleConfig{}).value(); }

Mixture gaussian() {
    return {{1.0},
            {at::tensor({1.0, -0.5}, at::kDouble)},
            {at::tensor({0.5, 0.2, 0.2, 0.3}, at::kDouble).view({2, 2})}};
}

Mixture three_blobs() {
    const at::Tensor c = 0.15 * at::eye(2, at::kDouble);
    return {{0.5, 0.3, 0.2},
            {at::tensor({-1.5, 0.0}, at::kDouble), at::tensor({1.5, 0.0}, at::kDouble),
             at::tensor({0.0, 1.5}, at::kDouble)},
            {c, c, at::tensor({0.3, -0.1, -0.1, 0.1}, at::kDouble).view({2, 2})}};
}

}  // namespace

class TestSamplers : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void timestepSpacings() {
        // diffusers' definitions (MATH.md) for T = 1000, N = 10.
        QCOMPARE(make_timesteps(1000, 10, TimestepSpacing::Leading),
                 (std::vector<int64_t>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0}));
        QCOMPARE(make_timesteps(1000, 10, TimestepSpacing::Trailing),
                 (std::vector<int64_t>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}));
        QCOMPARE(make_timesteps(1000, 10, TimestepSpacing::Linspace),
                 (std::vector<int64_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
        const auto all = make_timesteps(1000, 1000, TimestepSpacing::Trailing);
        QCOMPARE(all.front(), int64_t(999));
        QCOMPARE(all.back(), int64_t(0));
        for (size_t i = 1; i < all.size(); ++i) QCOMPARE(all[i], all[i - 1] - 1);
    }

    void conformance_data() {
        QTest::addColumn<int>("kind");
        QTest::addColumn<int>("steps");
        QTest::addColumn<double>("eta");
        QTest::addColumn<bool>("mixture");
        QTest::addColumn<double>("covTol");
        QTest::newRow("ddpm-1000 gaussian") << int(SamplerKind::Ddpm) << 1000 << 1.0 << false << 0.02;
        QTest::newRow("ddim-50 gaussian") << int(SamplerKind::Ddim) << 50 << 0.0 << false << 0.08;
        QTest::newRow("ddim-50-eta1 gaussian") << int(SamplerKind::Ddim) << 50 << 1.0 << false << 0.08;
        QTest::newRow("dpmpp2m-20 gaussian") << int(SamplerKind::DpmSolverPP2M) << 20 << 0.0 << false << 0.04;
        QTest::newRow("ddpm-1000 mixture") << int(SamplerKind::Ddpm) << 1000 << 1.0 << true << 0.02;
        QTest::newRow("ddim-50 mixture") << int(SamplerKind::Ddim) << 50 << 0.0 << true << 0.08;
        QTest::newRow("dpmpp2m-20 mixture") << int(SamplerKind::DpmSolverPP2M) << 20 << 0.0 << true << 0.04;
    }
    void conformance() {
        QFETCH(int, kind);
        QFETCH(int, steps);
        QFETCH(double, eta);
        QFETCH(bool, mixture);
        QFETCH(double, covTol);
        const auto schedule = cosine();
        const Mixture mix = mixture ? three_blobs() : gaussian();
        SamplerConfig cfg;
        cfg.kind = SamplerKind(kind);
        cfg.steps = steps;
        cfg.eta = eta;
        cfg.clip_x0 = false;
        auto sampler = make_sampler(schedule, cfg);
        QVERIFY(sampler.ok());
        const int64_t N = 20000;
        at::Generator gen = make_generator(2024);
        at::Tensor xT = at::randn({N, 2}, gen, at::TensorOptions().dtype(at::kDouble));
        const ChainResult r = run_chain(*sampler.value(), xT, exact_denoiser(mix, schedule), gen);
        QCOMPARE(r.steps_done, int64_t(steps));
        const at::Tensor x = r.x;
        const at::Tensor mean = x.mean(0);
        const at::Tensor xc = x - mean;
        const at::Tensor cov = at::matmul(xc.t(), xc) / double(N - 1);
        const at::Tensor dm = (mean - mix.total_mean()).abs().max();
        const at::Tensor dc = (cov - mix.total_cov()).abs().max();
        qInfo("max |mean error| %.4f, max |covariance error| %.4f", dm.item<double>(), dc.item<double>());
        // Sampling error alone at N = 20000 is ~0.01 on the mean and ~0.02 on the covariance; on top
        // of it, 50-step DDIM has a known discretisation bias (it shrinks the covariance a little).
        QVERIFY2(dm.item<double>() < 0.03, qPrintable(QString("mean off by %1").arg(dm.item<double>())));
        QVERIFY2(dc.item<double>() < covTol, qPrintable(QString("covariance off by %1").arg(dc.item<double>())));
    }

    void goldenAgainstPythonReference_data() {
        // Values from tests/golden/reference_samplers.py (pure Python, independent of this code):
        // 1-D data N(0.7, 0.2^2), cosine T=1000, trailing spacing, x_T in {-2, -0.5, 0, 1, 2.5}.
        QTest::addColumn<int>("kind");
        QTest::addColumn<int>("steps");
        QTest::addColumn<QVector<double>>("expected");
        QTest::newRow("ddim-10") << int(SamplerKind::Ddim) << 10
                                 << QVector<double>{GOLDEN_DDIM_10};
        QTest::newRow("dpmpp2m-8") << int(SamplerKind::DpmSolverPP2M) << 8
                                   << QVector<double>{GOLDEN_DPMPP_8};
    }
    void goldenAgainstPythonReference() {
        QFETCH(int, kind);
        QFETCH(int, steps);
        QFETCH(QVector<double>, expected);
        const auto schedule = cosine();
        // A 1-D Gaussian, embedded as the first coordinate of the 2-D mixture machinery.
        const Mixture mix{{1.0},
                          {at::tensor({0.7, 0.0}, at::kDouble)},
                          {at::tensor({0.04, 0.0, 0.0, 1.0}, at::kDouble).view({2, 2})}};
        SamplerConfig cfg;
        cfg.kind = SamplerKind(kind);
        cfg.steps = steps;
        cfg.clip_x0 = false;
        auto sampler = make_sampler(schedule, cfg);
        at::Tensor xT = at::zeros({5, 2}, at::kDouble);
        xT.select(1, 0).copy_(at::tensor({-2.0, -0.5, 0.0, 1.0, 2.5}, at::kDouble));
        at::Generator gen = make_generator(0);
        const at::Tensor x = run_chain(*sampler.value(), xT, exact_denoiser(mix, schedule), gen).x;
        for (int i = 0; i < 5; ++i) {
            QVERIFY2(std::abs(x[i][0].item<double>() - expected[i]) < 1e-9,
                     qPrintable(QString("%1: got %2 want %3").arg(i).arg(x[i][0].item<double>(), 0, 'g', 15).arg(expected[i], 0, 'g', 15)));
        }
    }

    void sameSeedSameChain() {
        for (SamplerKind k : {SamplerKind::Ddpm, SamplerKind::Ddim, SamplerKind::DpmSolverPP2M}) {
            const auto schedule = cosine();
            SamplerConfig cfg;
            cfg.kind = k;
            cfg.steps = 25;
            cfg.eta = 1.0;
            auto run = [&](uint64_t seed) {
                auto sampler = make_sampler(schedule, cfg);
                at::Generator gen = make_generator(seed);
                at::Tensor xT = at::randn({8, 2}, gen, at::TensorOptions().dtype(at::kFloat));
                return run_chain(*sampler.value(), xT, exact_denoiser(gaussian(), schedule), gen).x;
            };
            QVERIFY(at::equal(run(5), run(5)));
            QVERIFY(!at::equal(run(5), run(6)));
        }
    }

    void stepCallbackAndCancel() {
        const auto schedule = cosine();
        SamplerConfig cfg;
        cfg.steps = 30;
        auto sampler = make_sampler(schedule, cfg);
        std::atomic<bool> cancel{false};
        std::vector<int64_t> seen;
        ChainHooks hooks;
        hooks.cancel = &cancel;
        hooks.on_step = [&](const StepInfo& s) {
            QCOMPARE(s.total, int64_t(30));
            QCOMPARE(s.x0.sizes(), s.x_t.sizes());
            QCOMPARE(s.eps.sizes(), s.x_t.sizes());
            seen.push_back(s.t);
            if (s.index == 11) cancel = true;  // cancelled from "another thread" mid-chain
        };
        at::Generator gen = make_generator(1);
        const ChainResult r = run_chain(*sampler.value(), at::randn({4, 2}), exact_denoiser(gaussian(), schedule), gen, hooks);
        QVERIFY(r.cancelled);
        QCOMPARE(r.steps_done, int64_t(12));  // stops before the next step begins
        QCOMPARE(int64_t(seen.size()), int64_t(12));
        QCOMPARE(seen.front(), int64_t(999));
    }

    void guidanceCombinesHalvesInOneBatch() {
        // A fake model: output = label value (cond) or -1 (null), so the guided output is known.
        int calls = 0;
        int64_t last_batch = 0;
        ModelFn model = [&](const at::Tensor& x, const at::Tensor&, const at::Tensor& y) {
            ++calls;
            last_batch = x.size(0);
            const at::Tensor v = at::where(y == 10, at::full_like(y, -1), y).to(at::kFloat);
            return v.view({-1, 1}).expand({x.size(0), 2}).contiguous();
        };
        auto control = std::make_shared<GuidanceControl>(3.0);
        RawDenoiser d = classifier_free_guidance(model, at::tensor({2, 5}, at::kLong), 10, control);
        const at::Tensor x = at::zeros({2, 2});
        at::Tensor out = d(x, 500);
        QCOMPARE(calls, 1);
        QCOMPARE(last_batch, int64_t(4));  // conditional and unconditional halves together
        // -1 + 3 (2 - -1) = 8 ; -1 + 3 (5 - -1) = 17
        QCOMPARE(out[0][0].item<float>(), 8.0f);
        QCOMPARE(out[1][1].item<float>(), 17.0f);
        control->set_scale(1.0);  // live change: applies at the next call
        out = d(x, 499);
        QCOMPARE(last_batch, int64_t(2));
        QCOMPARE(out[0][0].item<float>(), 2.0f);
        control->set_scale(0.0);
        QCOMPARE(d(x, 498)[1][0].item<float>(), -1.0f);
        control->set_scale(4.0);
        control->set_interval(100, 400);  // guidance only inside [100, 400]
        QCOMPARE(d(x, 500)[0][0].item<float>(), 2.0f);
        QCOMPARE(d(x, 300)[0][0].item<float>(), -1.0f + 4.0f * 3.0f);
    }

    // Dynamic thresholding against its closed form: sample 0's x0 = (-3, 0.5, 2, 0.25): with the
    // 100th percentile s = 3, x0 / 3; with the median of |x0| (1.25) s = 1.25, clamp then / 1.25;
    // sample 1's x0 lies inside [-1, 1], so s = 1 and it stays as it is; the eps stays consistent.
    void dynamicThresholdingMatchesItsDefinition() {
        const auto schedule = cosine();
        const at::Tensor x0 = at::tensor({-3.0f, 0.5f, 2.0f, 0.25f, 0.1f, -0.4f, 0.9f, 0.0f}).view({2, 4});
        Denoiser fixed = [&](const at::Tensor& x, int64_t t) {
            X0Eps p;
            p.x0 = x0.clone();
            const double a = schedule.alpha_bar(t);
            p.eps = (x - std::sqrt(a) * p.x0) / std::sqrt(1 - a);
            return p;
        };
        auto first_x0 = [&](double pct, bool clip) {
            SamplerConfig cfg;
            cfg.steps = 10;
            cfg.clip_x0 = clip;
            cfg.dynamic_threshold = pct;
            auto sampler = make_sampler(schedule, cfg).value();
            at::Generator gen = make_generator(1);
            const at::Tensor x = at::randn({2, 4}, gen, at::TensorOptions().dtype(at::kFloat));
            return sampler->step(0, x, fixed, gen);
        };
        const at::Tensor full = first_x0(1.0, true).x0;
        QVERIFY(at::allclose(full[0], x0[0] / 3.0, 1e-6, 1e-6));
        QVERIFY(at::allclose(full[1], x0[1], 1e-6, 1e-6));
        const at::Tensor median = first_x0(0.5, true).x0;
        QVERIFY(at::allclose(median[0], x0[0].clamp(-1.25, 1.25) / 1.25, 1e-6, 1e-6));
        const at::Tensor stat = first_x0(0.0, true).x0;  // static clipping saturates: -3 -> -1, 2 -> 1
        QVERIFY(at::allclose(stat[0], x0[0].clamp(-1, 1), 1e-6, 1e-6));
        QVERIFY(!at::allclose(stat[0], full[0]));
        // Errors: a percentile outside (0, 1], or dynamic thresholding without clipping.
        SamplerConfig bad;
        bad.dynamic_threshold = 1.5;
        QVERIFY(QString::fromStdString(make_sampler(schedule, bad).error()).contains("percentile"));
        bad.dynamic_threshold = 0.9;
        bad.clip_x0 = false;
        QVERIFY(!make_sampler(schedule, bad).ok());
    }

    void badSamplerSettings() {
        const auto schedule = cosine();
        SamplerConfig cfg;
        cfg.steps = 0;
        QVERIFY(!make_sampler(schedule, cfg).ok());
        cfg.steps = 1001;
        QVERIFY(QString::fromStdString(make_sampler(schedule, cfg).error()).contains("steps"));
        cfg.steps = 10;
        cfg.eta = -0.5;
        QVERIFY(!make_sampler(schedule, cfg).ok());
        QVERIFY(!parse_sampler_kind("euler").has_value());
        QCOMPARE(int(*parse_sampler_kind("dpmpp2m")), int(SamplerKind::DpmSolverPP2M));
    }
};

QTEST_APPLESS_MAIN(TestSamplers)
#include "test_samplers.moc"
