// NoiseSchedule against closed forms (../shared/MATH.md).
#include <cmath>

#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include "core/forward/schedule.h"

using namespace dlab;

namespace {

NoiseSchedule make(ScheduleKind kind, int64_t T, bool ztsnr = false) {
    ScheduleConfig c;
    c.kind = kind;
    c.timesteps = T;
    c.zero_terminal_snr = ztsnr;
    auto s = NoiseSchedule::create(c);
    if (!s) qFatal("schedule: %s", s.error().c_str());
    return s.value();
}

double val(const at::Tensor& t, int64_t i) { return t[i].item<double>(); }

}  // namespace

class TestSchedule : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void namesRoundTrip() {
        for (ScheduleKind k : all_schedule_kinds()) {
            auto parsed = parse_schedule_kind(to_string(k));
            QVERIFY(parsed.has_value());
            QCOMPARE(int(*parsed), int(k));
        }
        QCOMPARE(int(*parse_schedule_kind("squaredcos_cap_v2")), int(ScheduleKind::Cosine));
        QCOMPARE(int(*parse_schedule_kind("Scaled_Linear")), int(ScheduleKind::ScaledLinear));
        QVERIFY(!parse_schedule_kind("cosin").has_value());
        QVERIFY(!parse_schedule_kind("").has_value());
    }

    void everythingIsFloat64() {
        const auto s = make(ScheduleKind::Cosine, 50);
        for (const at::Tensor* t : {&s.betas(), &s.alphas(), &s.alpha_bars(), &s.snr(),
                                    &s.posterior_variance(), &s.posterior_mean_coef_x0()}) {
            QCOMPARE(t->scalar_type(), at::kDouble);
            QCOMPARE(t->size(0), int64_t(50));
        }
    }

    void linearMatchesClosedForm() {
        const int64_t T = 1000;
        const auto s = make(ScheduleKind::Linear, T);
        double prod = 1.0;
        for (int64_t t = 0; t < T; ++t) {
            const double beta = 1e-4 + (0.02 - 1e-4) * double(t) / double(T - 1);
            prod *= 1.0 - beta;
            QVERIFY(std::abs(s.beta(t) - beta) < 1e-15);
            QVERIFY(std::abs(s.alpha_bar(t) - prod) < 1e-12 * std::max(prod, 1e-3));
        }
        // Well-known figure: abar at T-1 of the DDPM linear schedule is about 4.04e-5.
        QVERIFY(std::abs(s.alpha_bar(T - 1) - 4.0358e-5) < 1e-8);
    }

    void linearRescaledByT() {
        ScheduleConfig c;
        c.kind = ScheduleKind::Linear;
        c.timesteps = 250;
        c.rescale_to_T = true;
        auto s = NoiseSchedule::create(c);
        QVERIFY(s.ok());
        QVERIFY(std::abs(s->beta(0) - 4e-4) < 1e-15);
        QVERIFY(std::abs(s->beta(249) - 0.08) < 1e-15);
    }

    void cosineTelescopes() {
        // Without clipping, prod (f(i+1)/f(i)) = f(t+1)/f(0): abar_t is the closed form.
        const int64_t T = 1000;
        const double sOff = 0.008;
        const auto s = make(ScheduleKind::Cosine, T);
        auto f = [&](double u) {
            const double c = std::cos((u + sOff) / (1.0 + sOff) * M_PI / 2.0);
            return c * c;
        };
        int clipped = 0;
        for (int64_t t = 0; t < T; ++t) {
            if (s.beta(t) >= 0.999 - 1e-15) {
                ++clipped;
                continue;
            }
            if (clipped) break;
            const double expected = f(double(t + 1) / double(T)) / f(0.0);
            QVERIFY2(std::abs(s.alpha_bar(t) - expected) < 1e-12,
                     qPrintable(QString("t=%1 got %2 want %3").arg(t).arg(s.alpha_bar(t)).arg(expected)));
        }
        // Only the last step(s) hit the 0.999 cap.
        QVERIFY(s.beta(T - 1) <= 0.999 + 1e-15);
        QVERIFY(s.beta(0) > 0.0 && s.beta(0) < 1e-4);
    }

    void scaledLinearIsLinearInSqrtBeta() {
        const int64_t T = 1000;
        const auto s = make(ScheduleKind::ScaledLinear, T);
        QVERIFY(std::abs(s.beta(0) - 8.5e-4) < 1e-15);
        QVERIFY(std::abs(s.beta(T - 1) - 1.2e-2) < 1e-15);
        const double step = (std::sqrt(1.2e-2) - std::sqrt(8.5e-4)) / double(T - 1);
        for (int64_t t = 1; t < T; ++t)
            QVERIFY(std::abs(std::sqrt(s.beta(t)) - std::sqrt(s.beta(t - 1)) - step) < 1e-13);
    }

    void sigmoidEndsAndSymmetry() {
        const int64_t T = 1000;
        const auto s = make(ScheduleKind::Sigmoid, T);
        QVERIFY(std::abs(s.beta(0) - 1e-4) < 1e-15);
        QVERIFY(std::abs(s.beta(T - 1) - 0.02) < 1e-15);
        // sigmoid(-x) = 1 - sigmoid(x): beta_t + beta_{T-1-t} = beta_start + beta_end.
        for (int64_t t = 0; t < T; ++t)
            QVERIFY(std::abs(s.beta(t) + s.beta(T - 1 - t) - 0.0201) < 1e-14);
        // Monotone increasing.
        for (int64_t t = 1; t < T; ++t) QVERIFY(s.beta(t) > s.beta(t - 1));
    }

    void snrAndLogSnr() {
        for (ScheduleKind k : all_schedule_kinds()) {
            const auto s = make(k, 300);
            for (int64_t t = 0; t < 300; t += 7) {
                const double a = s.alpha_bar(t);
                QVERIFY(std::abs(val(s.snr(), t) - a / (1 - a)) < 1e-9 * (a / (1 - a)));
                QVERIFY(std::abs(val(s.log_snr(), t) - std::log(std::sqrt(a) / std::sqrt(1 - a))) < 1e-10);
                if (t > 0) QVERIFY(val(s.snr(), t) < val(s.snr(), t - 1));  // SNR falls with t
            }
        }
    }

    void posteriorCoefficients() {
        for (ScheduleKind k : all_schedule_kinds()) {
            const auto s = make(k, 200);
            QCOMPARE(s.alpha_bar_prev(0), 1.0);
            QCOMPARE(val(s.posterior_variance(), 0), 0.0);
            // The log variance is "clipped" at t = 0: beta~_1 stands in for beta~_0 = 0.
            QCOMPARE(val(s.posterior_log_variance_clipped(), 0), std::log(val(s.posterior_variance(), 1)));
            for (int64_t t = 1; t < 200; ++t) {
                const double ab = s.alpha_bar(t), abp = s.alpha_bar_prev(t), b = s.beta(t);
                QCOMPARE(abp, s.alpha_bar(t - 1));
                // Closed forms of Ho et al. 2020, eq. 7.
                const double var = (1 - abp) / (1 - ab) * b;
                const double c0 = std::sqrt(abp) * b / (1 - ab);
                const double ct = std::sqrt(1 - b) * (1 - abp) / (1 - ab);
                QVERIFY(std::abs(val(s.posterior_variance(), t) - var) < 1e-15);
                QVERIFY(std::abs(val(s.posterior_mean_coef_x0(), t) - c0) < 1e-14);
                QVERIFY(std::abs(val(s.posterior_mean_coef_xt(), t) - ct) < 1e-14);
                // Independent identity: the posterior precision is the sum of the prior's
                // (1 / (1 - abar_{t-1})) and the likelihood's (alpha_t / beta_t).
                const double precision = 1.0 / (1 - abp) + (1 - b) / b;
                QVERIFY(std::abs(val(s.posterior_variance(), t) * precision - 1.0) < 1e-9);
                // A noiseless x_t = sqrt(abar_t) x_0 must map to the mean sqrt(abar_{t-1}) x_0.
                QVERIFY(std::abs(c0 + ct * std::sqrt(ab) - std::sqrt(abp)) < 1e-12);
                QVERIFY(std::abs(val(s.posterior_log_variance_clipped(), t) - std::log(var)) < 1e-9);
            }
        }
    }

    void zeroTerminalSnr() {
        for (ScheduleKind k : all_schedule_kinds()) {
            const auto plain = make(k, 1000);
            const auto z = make(k, 1000, true);
            QVERIFY(std::abs(z.alpha_bar(999)) < 1e-20);
            QCOMPARE(val(z.snr(), 999), 0.0);
            QVERIFY(std::abs(z.alpha_bar(0) - plain.alpha_bar(0)) < 1e-12);
            QCOMPARE(z.beta(999), 1.0);
            // sqrt(abar) is an affine map of the original: check at the midpoint.
            const double a0 = std::sqrt(plain.alpha_bar(0)), aT = std::sqrt(plain.alpha_bar(999));
            const double mid = (std::sqrt(plain.alpha_bar(500)) - aT) * a0 / (a0 - aT);
            QVERIFY(std::abs(std::sqrt(z.alpha_bar(500)) - mid) < 1e-12);
        }
    }

    void snrShiftMultipliesSnrEverywhere() {
        // SNR'(t) = factor * SNR(t) at every t, for every kind; factor 1 is the plain schedule.
        for (ScheduleKind k : all_schedule_kinds()) {
            const auto plain = make(k, 1000);
            for (double factor : {0.25, 4.0, 64.0}) {
                ScheduleConfig c = plain.config();
                c.snr_shift = factor;
                auto shifted = NoiseSchedule::create(c);
                QVERIFY2(shifted.ok(), shifted.ok() ? "" : shifted.error().c_str());
                for (int64_t t : {0, 1, 250, 500, 900, 998}) {
                    const double want = factor * val(plain.snr(), t);
                    QVERIFY2(std::abs(val(shifted->snr(), t) - want) <= 1e-9 * want,
                             qPrintable(QString("%1 x%2 t=%3: %4 vs %5").arg(QString::fromStdString(to_string(k)))
                                            .arg(factor).arg(t).arg(val(shifted->snr(), t)).arg(want)));
                    // a valid schedule: betas in (0, 1), abar falling
                    QVERIFY(shifted->beta(t) > 0 && shifted->beta(t) < 1);
                    QVERIFY(shifted->alpha_bar(t + 1) < shifted->alpha_bar(t));
                }
            }
            // Before the zero-terminal rescale: the last step still ends at SNR 0.
            ScheduleConfig z = plain.config();
            z.snr_shift = 4;
            z.zero_terminal_snr = true;
            auto zs = NoiseSchedule::create(z);
            QVERIFY(zs.ok());
            QCOMPARE(val(zs->snr(), 999), 0.0);
        }
        ScheduleConfig c;
        c.snr_shift = 4;
        QCOMPARE(QString::fromStdString(schedule_summary(c)), QString("cosine, SNR x 4"));
        c.snr_shift = 1;
        QCOMPARE(QString::fromStdString(schedule_summary(c)), QString("cosine"));
        for (double bad : {0.0, -2.0, 1e4, std::nan("")}) {
            c.snr_shift = bad;
            auto s = NoiseSchedule::create(c);
            QVERIFY(!s.ok());
            QVERIFY(QString::fromStdString(s.error()).contains("SNR shift"));
        }
    }

    void badConfigsAreErrors() {
        ScheduleConfig c;
        c.timesteps = 1;
        auto s = NoiseSchedule::create(c);
        QVERIFY(!s.ok());
        QVERIFY(QString::fromStdString(s.error()).contains("timesteps"));
        c.timesteps = 100;
        c.kind = ScheduleKind::Linear;
        c.beta_start = 0.5;
        c.beta_end = 0.1;
        s = NoiseSchedule::create(c);
        QVERIFY(!s.ok());
        QVERIFY(QString::fromStdString(s.error()).contains("beta"));
        c.beta_start = -1;
        QVERIFY(!NoiseSchedule::create(c).ok());
        c.beta_start = std::nan("");
        QVERIFY(!NoiseSchedule::create(c).ok());
    }
};

QTEST_APPLESS_MAIN(TestSchedule)
#include "test_schedule.moc"
