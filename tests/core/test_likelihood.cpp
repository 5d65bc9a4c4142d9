// The variational bound in bits/dim (core/evaluation/likelihood.h): every term against its closed
// form for data that a denoiser knows exactly (a point mass), the stratified estimate against the
// exact sum, bad inputs as messages, and a real training run whose bound improves.
#include <cmath>

#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/data/datasets.h"
#include "core/evaluation/likelihood.h"
#include "core/io/model_io.h"
#include "core/sampling/sampler.h"
#include "core/training/trainer.h"
#include "tests/core/test_data.h"

using namespace dlab;

namespace {

const double kLn2 = std::log(2.0);

NoiseSchedule schedule(ScheduleKind kind, int64_t T) {
    ScheduleConfig c;
    c.kind = kind;
    c.timesteps = T;
    return NoiseSchedule::create(c).value();
}

// 8-bit data in [-1, 1], both edges included: [2, 1, 4, 4].
at::Tensor point_data() {
    at::Tensor k = at::arange(32, at::kLong) * 8;  // 0, 8, ..., 248
    k[5] = 255;
    k[17] = 0;
    return (k.to(at::kFloat) / 127.5 - 1.0).view({2, 1, 4, 4});
}

// The exact denoiser of a point mass at `c`: x0 = c, and the eps consistent with it.
Denoiser exact(const at::Tensor& c, const NoiseSchedule& s) {
    return [c, s](const at::Tensor& xt, int64_t t) {
        const double a = s.alpha_bar(t);
        return X0Eps{c, (xt - std::sqrt(a) * c) / std::sqrt(1.0 - a), {}, {}};
    };
}

double phi(double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); }

// Mean over the data's values of a per-value function, in bits.
template <class F>
double mean_bits(const at::Tensor& x, F f) {
    const at::Tensor v = x.flatten().to(at::kDouble);
    double s = 0;
    for (int64_t i = 0; i < v.size(0); ++i) s += f(v[i].item<double>());
    return s / double(v.size(0)) / kLn2;
}

ModelConfig tiny() {
    ModelConfig c = test::tiny_unet();
    c.schedule.timesteps = 200;
    return c;
}

}  // namespace

class TestLikelihood : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void pointMassTermsMatchClosedForms_data() {
        QTest::addColumn<int>("kind");
        QTest::newRow("linear") << int(ScheduleKind::Linear);
        QTest::newRow("cosine") << int(ScheduleKind::Cosine);
    }

    void pointMassTermsMatchClosedForms() {
        QFETCH(int, kind);
        const int64_t T = 100;
        const NoiseSchedule s = schedule(ScheduleKind(kind), T);
        const at::Tensor c = point_data();
        at::Generator gen = make_generator(3);
        const BoundGrid grid = make_bound_grid(T, 0, gen).value();
        QVERIFY(grid.exact);
        QCOMPARE(int64_t(grid.timesteps.size()), T);
        for (BoundVariance v : {BoundVariance::Small, BoundVariance::Large}) {
            at::Generator g = make_generator(5);
            const BoundTerms b = bound_terms(exact(c, s), s, c, grid, v, true, g);
            QCOMPARE(b.terms.sizes().vec(), (std::vector<int64_t>{2, T}));
            // L_T per value: KL(N(sqrt(a) c, 1 - a) || N(0, 1)) = (-1 - log(1 - a) + (1 - a) + a c^2) / 2.
            const double aT = s.alpha_bar(T - 1);
            const double prior = mean_bits(c, [&](double x) { return 0.5 * (-1 - std::log(1 - aT) + (1 - aT) + aT * x * x); });
            QVERIFY2(std::abs(b.prior.mean().item<double>() - prior) < 1e-6 * std::max(1.0, prior),
                     qPrintable(QString("prior %1 vs %2").arg(b.prior.mean().item<double>()).arg(prior)));
            // L_0: the decoder N(c, beta~_1) over the bin of c: 2 Phi(h / sigma) - 1 inside, Phi(h / sigma) at the edges.
            const double sigma = std::sqrt(s.posterior_variance()[1].item<double>()), h = 1.0 / 255.0;
            const double l0 = mean_bits(c, [&](double x) {
                const bool edge = std::abs(x) > 0.999;
                return -std::log(edge ? phi(h / sigma) : 2 * phi(h / sigma) - 1);
            });
            QVERIFY2(std::abs(b.terms.select(1, 0).mean().item<double>() - l0) < 1e-4 * l0,
                     qPrintable(QString("L_0 %1 vs %2").arg(b.terms.select(1, 0).mean().item<double>()).arg(l0)));
            // L_t, t >= 1: the means agree exactly, so only the variances differ:
            // small: 0; large: (log(beta / beta~) + beta~ / beta - 1) / 2 per value.
            for (int64_t t = 1; t < T; ++t) {
                const double bt = s.beta(t), pt = s.posterior_variance()[t].item<double>();
                const double expect = v == BoundVariance::Small ? 0.0 : 0.5 * (std::log(bt / pt) + pt / bt - 1) / kLn2;
                const double got = b.terms.select(1, t).mean().item<double>();
                QVERIFY2(std::abs(got - expect) < 1e-5 + 1e-4 * expect,
                         qPrintable(QString("t %1 (%2): %3 vs %4").arg(t).arg(to_string(v).c_str()).arg(got).arg(expect)));
            }
            // The exact denoiser predicts the noise exactly (to float round-off).
            QVERIFY(b.mse.max().item<double>() < 1e-8);
            const double total = b.total(grid).mean().item<double>();
            const double parts = b.prior.mean().item<double>() + b.terms.sum(1).mean().item<double>();
            QVERIFY2(std::abs(total - parts) < 1e-9 * std::max(1.0, parts), qPrintable(QString("%1 vs %2").arg(total).arg(parts)));
        }
    }

    void stratifiedEstimateIsUnbiased() {
        const int64_t T = 100, strata = 9;
        const NoiseSchedule s = schedule(ScheduleKind::Linear, T);
        const at::Tensor c = point_data();
        at::Generator g0 = make_generator(1);
        const BoundGrid all = make_bound_grid(T, 0, g0).value();
        at::Generator g1 = make_generator(1);
        const double exact_total = bound_terms(exact(c, s), s, c, all, BoundVariance::Large, true, g1).total(all).mean().item<double>();
        double sum = 0, sum2 = 0;
        const int draws = 300;
        for (int d = 0; d < draws; ++d) {
            at::Generator gg = make_generator(100 + d);
            const BoundGrid grid = make_bound_grid(T, strata, gg).value();
            QVERIFY(!grid.exact);
            QCOMPARE(grid.timesteps.size(), size_t(strata + 1));
            QCOMPARE(grid.timesteps.front(), int64_t(0));
            double w = 0;
            for (size_t k = 0; k < grid.weights.size(); ++k) {
                w += grid.weights[k];
                if (k > 0) QVERIFY(grid.timesteps[k] > grid.timesteps[k - 1] && grid.timesteps[k] < T);
            }
            QCOMPARE(w, double(T));
            // Geometric ranges: the first timesteps are taken one by one.
            QCOMPARE(grid.timesteps[1], int64_t(1));
            QCOMPARE(grid.weights[1], 1.0);
            at::Generator gn = make_generator(7);
            const double e = bound_terms(exact(c, s), s, c, grid, BoundVariance::Large, true, gn).total(grid).mean().item<double>();
            sum += e;
            sum2 += e * e;
        }
        // Unbiased: the mean of the draws lies within 4 standard errors of the exact sum.
        const double mean = sum / draws, sd = std::sqrt(std::max(0.0, sum2 / draws - mean * mean));
        qInfo("exact %.5f bits/dim; %d stratified estimates (%lld strata): mean %.5f, sd %.5f", exact_total, draws,
              (long long)strata, mean, sd);
        QVERIFY(sd > 0);
        QVERIFY(std::abs(mean - exact_total) < 4 * sd / std::sqrt(double(draws)));
        // Bad grids are messages.
        at::Generator g = make_generator(0);
        QVERIFY(!make_bound_grid(1, 0, g).ok());
        QVERIFY(!make_bound_grid(100, -3, g).ok());
    }

    void badInputsAreMessages() {
        ModelConfig mc = tiny();
        auto net = make_network(mc.network);
        QVERIFY(net.ok());
        LoadedModel m;
        m.config = mc;
        m.network = net.value();
        m.network->eval();
        const at::Tensor x = at::zeros({4, 1, 28, 28});
        const at::Tensor y = at::zeros({4}, at::kLong);
        BoundOptions o;
        o.strata = 3;
        auto r = model_bound(m, at::zeros({4, 1, 32, 32}), y, o);
        QVERIFY(!r.ok() && r.error().find("[N, 1, 28, 28]") != std::string::npos);
        r = model_bound(m, x, at::full({4}, 10, at::kLong), o);
        QVERIFY(!r.ok() && r.error().find("labels") != std::string::npos);
        r = model_bound(m, x, at::Tensor(), o);
        QVERIFY(!r.ok() && r.error().find("label") != std::string::npos);
        o.batch = 0;
        QVERIFY(!model_bound(m, x, y, o).ok());
        o.batch = 2;
        o.unconditional = true;
        r = model_bound(m, x, at::Tensor(), o);
        QVERIFY2(r.ok(), r.error().c_str());
        QCOMPARE(r->conditioning, std::string("unconditional (null class)"));
        QCOMPARE(r->grid.timesteps.size(), size_t(4));
        ModelConfig latent = mc;
        latent.autoencoder = "fashion-mnist-autoencoder";
        m.config = latent;
        r = model_bound(m, x, y, o);
        QVERIFY(!r.ok() && r.error().find("latent") != std::string::npos);
    }

    // A real run: the bound of the same tiny network falls from 1 training step to 100, on test
    // images it never saw; its learned-variance twin reports the learned variance.
    void boundImprovesAsTrainingProceeds() {
        const LabelledData data = test::fashion_subset(1024);
        const LabelledData test = test::fashion_subset(64, false);
        TrainConfig tc;
        tc.batch = 16;
        tc.lr = 3e-3;
        tc.warmup = 10;
        tc.ema_decay = 0.9;
        tc.log_every = 50;
        tc.checkpoint_every = 100000;
        tc.seed = 4;
        BoundOptions o;
        o.strata = 12;
        o.batch = 64;
        o.seed = 9;
        auto bound_after = [&](int64_t steps, bool learn_sigma) {
            QTemporaryDir dir;
            ModelConfig mc = tiny();
            mc.network.learn_sigma = learn_sigma;
            TrainConfig t = tc;
            t.steps = steps;
            auto r = train(mc, t, data, c10::Device(c10::kCPU), dir.path().toStdString(), TrainStart::New);
            if (!r) qFatal("%s", r.error().c_str());
            auto m = load_model(dir.filePath("model.safetensors").toStdString(), c10::Device(c10::kCPU));
            if (!m) qFatal("%s", m.error().c_str());
            auto b = model_bound(m.value(), test.x, test.labels, o);
            if (!b) qFatal("%s", b.error().c_str());
            qInfo("%s after %lld steps: %.3f +- %.3f bits/dim (prior %.4f, decoder %.3f, diffusion %.3f; %s variance)",
                  learn_sigma ? "learned variance" : "fixed variance", (long long)steps, b->bpd, b->bpd_se, b->prior,
                  b->decoder, b->diffusion, b->variance.c_str());
            return b.value();
        };
        const BoundReport early = bound_after(1, false);
        const BoundReport late = bound_after(100, false);
        QCOMPARE(early.variance, std::string("small"));
        QVERIFY(std::isfinite(early.bpd) && std::isfinite(late.bpd));
        QVERIFY(late.bpd < early.bpd - 3 * std::hypot(early.bpd_se, late.bpd_se));
        // Per-timestep curves: one value per grid timestep; the noise-prediction loss falls too.
        QCOMPARE(late.term_mean.size(), late.grid.timesteps.size());
        double mse_early = 0, mse_late = 0;
        for (size_t k = 0; k < late.mse_mean.size(); ++k) {
            mse_early += early.mse_mean[k];
            mse_late += late.mse_mean[k];
        }
        QVERIFY(mse_late < mse_early);
        const BoundReport learned = bound_after(10, true);
        QCOMPARE(learned.variance, std::string("learned"));
        QVERIFY(std::isfinite(learned.bpd) && learned.bpd > 0);
    }
};

QTEST_APPLESS_MAIN(TestLikelihood)
#include "test_likelihood.moc"
