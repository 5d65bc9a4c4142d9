// Classifier guidance: how each sampler applies the gradient (closed forms), the bundled
// noise-aware classifier's gradient raises the class probability, and guided sampling of the
// bundled default model raises class agreement over unguided sampling at equal seeds.
#include <cmath>

#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/evaluation/classifier.h"
#include "core/data/datasets.h"
#include "core/networks/graphed_model.h"
#include "core/sampling/generate.h"
#include "core/guidance/guidance.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/guidance/noisy_classifier.h"
#include "core/sampling/sampler.h"

using namespace dlab;

namespace {

NoisyClassifier bundled_noisy() {
    auto path = resolve_model("fashion-mnist-noisy-classifier");
    if (!path) qFatal("%s", path.error().c_str());
    auto c = load_noisy_classifier(path.value(), c10::Device(c10::kCPU));
    if (!c) qFatal("%s", c.error().c_str());
    return c.value();
}

}  // namespace

class TestGuidance : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void samplersApplyTheGradient() {
        auto sched = NoiseSchedule::create(ScheduleConfig{}).value();
        const at::Tensor x = at::randn({3, 1, 5, 5}), g = at::randn({3, 1, 5, 5});
        const at::Tensor eps = at::randn({3, 1, 5, 5}) * 0.1;
        for (SamplerKind kind : {SamplerKind::Ddim, SamplerKind::Ddpm}) {
            SamplerConfig sc;
            sc.kind = kind;
            sc.steps = 10;
            sc.clip_x0 = false;
            auto sampler = make_sampler(sched, sc).value();
            const int64_t i = 6, t = sampler->timesteps()[i], s = sampler->timesteps()[i + 1];
            const double ab_t = sched.alpha_bar(t), ab_s = sched.alpha_bar(s);
            auto step = [&](const at::Tensor& e, bool guided) {
                Denoiser d = [&](const at::Tensor& xt, int64_t tt) {
                    X0Eps p;
                    p.eps = e;
                    p.x0 = sched.x0_from_eps(xt, e, at::full({xt.size(0)}, tt, at::kLong));
                    if (guided) p.guidance_grad = g;
                    return p;
                };
                at::Generator gen = make_generator(9);
                return sampler->step(i, x, d, gen).x_prev;
            };
            if (kind == SamplerKind::Ddim) {
                // Score correction: eps - sqrt(1 - abar_t) g, then the plain DDIM update.
                QVERIFY(at::allclose(step(eps, true), step(eps - std::sqrt(1 - ab_t) * g, false), 1e-5, 1e-5));
            } else {
                // Ancestral: the posterior mean moves by beta~ g (the same noise draw otherwise).
                const double var = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s);
                QVERIFY(at::allclose(step(eps, true) - step(eps, false), var * g, 1e-5, 1e-6));
            }
        }
    }

    void gradientRaisesTheClassProbability() {
        NoisyClassifier clf = bundled_noisy();
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        QVERIFY2(test.ok(), test.error().c_str());
        const int64_t n = 64;
        const at::Tensor x0 = test->x.narrow(0, 0, n), y = test->labels.narrow(0, 0, n);
        auto sched = NoiseSchedule::create(clf->config().schedule).value();
        at::Generator gen = make_generator(4);
        for (int64_t t : {100, 400, 700}) {
            const at::Tensor tt = at::full({n}, t, at::kLong);
            const at::Tensor xt = sched.add_noise(x0, at::randn(x0.sizes(), gen, at::TensorOptions().dtype(at::kFloat)), tt);
            ClassifierGradFn grad = classifier_gradient(clf, sched);
            const at::Tensor g = grad(xt, t, y);
            auto logp = [&](const at::Tensor& x) {
                torch::NoGradGuard ng;
                return at::log_softmax(clf->forward(x, tt), 1).gather(1, y.view({-1, 1})).squeeze(1);
            };
            // A small step along the normalised gradient raises log p(y | x_t) for every image.
            const at::Tensor norm = g.flatten(1).norm(2, 1).clamp_min(1e-12).view({n, 1, 1, 1});
            const at::Tensor before = logp(xt), after = logp(xt + 0.05 * g / norm);
            const double raised = (after > before).to(at::kDouble).mean().item<double>();
            qInfo("t=%lld: log p(y|x_t) rose for %.0f%% of images, mean %.3f -> %.3f", (long long)t, 100 * raised,
                  before.mean().item<double>(), after.mean().item<double>());
            QVERIFY(raised >= 0.95);
        }
    }

    void guidedSamplingRaisesClassAgreement() {
        auto mpath = resolve_model("default");
        QVERIFY2(mpath.ok(), mpath.error().c_str());
        auto model = load_model(mpath.value(), c10::Device(c10::kCPU));
        QVERIFY2(model.ok(), model.error().c_str());
        auto cpath = resolve_model("fashion-mnist-classifier");
        QVERIFY(cpath.ok());
        auto judge = load_classifier(cpath.value(), c10::Device(c10::kCPU));
        QVERIFY(judge.ok());
        const int64_t N = 40;
        const at::Tensor target = at::arange(N, at::kLong).remainder(10);
        auto agreement = [&](double c) {
            GenerateRequest req;
            req.sampler.kind = SamplerKind::Ddim;
            req.sampler.steps = 20;
            req.labels = target;
            req.count = N;
            req.guidance = 0.0;  // the unconditional path of the default model
            req.seed = 21;
            req.classifier_grad = classifier_gradient(bundled_noisy(), NoiseSchedule::create(model->config.schedule).value());
            req.classifier_scale = c;
            req.classifier_labels = target;
            auto x = generate(model.value(), req);
            if (!x) qFatal("%s", x.error().c_str());
            torch::NoGradGuard ng;
            return (judge.value()->forward(x.value().clamp(-1, 1)).argmax(1) == target).to(at::kDouble).mean().item<double>();
        };
        {
            // bf16 inference is a CUDA path: on the CPU the request is refused by name, before any work.
            GenerateRequest req;
            req.count = 2;
            req.bf16 = true;
            auto x = generate(model.value(), req);
            QVERIFY(!x);
            QVERIFY2(x.error().find("bf16") != std::string::npos && x.error().find("CUDA") != std::string::npos, x.error().c_str());
        }
        {
            // Graphs shared between requests (the GUI's jobs pass their thread's): the same samples as
            // a request with its own (on the CPU both are the plain forward pass); another network's
            // graphs are refused by name.
            GenerateRequest req;
            req.count = 3;
            req.sampler.steps = 4;
            req.labels = at::tensor({1, 5, 10}, at::kLong);
            req.seed = 5;
            const at::Tensor own = generate(model.value(), req).value();
            req.graphs = std::make_shared<GraphedModel>(model->network);
            auto shared = generate(model.value(), req);
            QVERIFY2(shared, shared ? "" : shared.error().c_str());
            QVERIFY(at::equal(shared.value(), own));
            auto other = load_model(mpath.value(), c10::Device(c10::kCPU));
            req.graphs = std::make_shared<GraphedModel>(other->network);
            auto refused = generate(model.value(), req);
            QVERIFY(!refused && refused.error().find("another network") != std::string::npos);
        }
        {
            // Half-precision inference (network.h: to_half; DLAB_HALF on CUDA): the same sampler and
            // guidance on a bf16 network (float32 outputs) draw nearly the same images.
            GenerateRequest req;
            req.count = 4;
            req.sampler.steps = 8;
            req.guidance = 3.0;
            req.labels = at::tensor({0, 1, 7, 9}, at::kLong);
            req.seed = 9;
            const at::Tensor full = generate(model.value(), req).value();
            auto half = load_model(mpath.value(), c10::Device(c10::kCPU));
            QVERIFY(half->network->to_half(at::kBFloat16));
            auto x = generate(half.value(), req);
            QVERIFY2(x, x ? "" : x.error().c_str());
            QCOMPARE(x->scalar_type(), at::kFloat);
            const double diff = (x.value() - full).abs().mean().item<double>();
            const double spread = (full - full.roll(1, 0)).abs().mean().item<double>();  // between different images
            qInfo("bf16 against float32 samples: mean |difference| %.4f (between images %.4f)", diff, spread);
            QVERIFY(diff > 0 && diff < 0.15 * spread);  // measured here: 0.047 against 0.58
        }
        const double off = agreement(0.0), on = agreement(10.0);
        qInfo("class agreement of %lld samples (same seeds): unguided %.3f, classifier scale 10 %.3f", (long long)N, off, on);
        QVERIFY(on >= off + 0.3);
        QVERIFY(on >= 0.7);
    }

    void chainStartsMidway() {
        // eval --from-real: a chain that starts at sampler step k from the samples there ends where the
        // whole chain does (DDIM is deterministic); steps outside the chain and a start without its
        // samples are refused by name.
        auto mpath = resolve_model("default");
        QVERIFY2(mpath.ok(), mpath.error().c_str());
        auto model = load_model(mpath.value(), c10::Device(c10::kCPU));
        QVERIFY2(model.ok(), model.error().c_str());
        GenerateRequest req;
        req.count = 3;
        req.sampler.steps = 10;
        req.guidance = 2.0;
        req.labels = at::tensor({2, 4, 9}, at::kLong);
        req.seed = 13;
        const int64_t k = 6;
        at::Tensor at_k;
        int64_t steps_seen = 0;
        const at::Tensor whole = generate(model.value(), req, [&](int64_t, int64_t, const StepInfo& info) {
                                     if (info.index == k) at_k = info.x_t.clone();
                                 }).value();
        QVERIFY(at_k.defined());
        req.noise = at_k;
        req.start_step = k;
        auto run = GenerateRun::create(model.value(), req);
        QVERIFY2(run, run ? "" : run.error().c_str());
        QCOMPARE(run.value()->total_steps(), int64_t(10 - k));
        while (!run.value()->done()) {
            run.value()->step([&](int64_t, int64_t, const StepInfo& info) { QCOMPARE(info.index, k + steps_seen++); });
        }
        QCOMPARE(steps_seen, int64_t(10 - k));
        QVERIFY(at::allclose(run.value()->result(), whole, 1e-5, 1e-5));
        QVERIFY(!at::allclose(at_k.clamp(-1, 1), whole, 1e-2, 1e-2));  // step k was still noisy
        req.start_step = 10;
        auto outside = generate(model.value(), req);
        QVERIFY(!outside && outside.error().find("first step 10 is outside 0..9") != std::string::npos);
        req.start_step = 3;
        req.noise = at::Tensor();
        auto bare = generate(model.value(), req);
        QVERIFY(!bare && bare.error().find("needs its samples") != std::string::npos);
    }

    void liveClassifierScaleAppliesAtTheNextStep() {
        auto control = std::make_shared<GuidanceControl>(1.0, 0.0);
        int grads = 0;
        Denoiser base = [](const at::Tensor& x, int64_t) {
            X0Eps p;
            p.x0 = at::zeros_like(x);
            p.eps = at::zeros_like(x);
            return p;
        };
        Denoiser d = add_classifier_guidance(base, [&](const at::Tensor& x, int64_t, const at::Tensor&) {
            ++grads;
            return at::ones_like(x);
        }, at::zeros({2}, at::kLong), control);
        const at::Tensor x = at::zeros({2, 1, 3, 3});
        QVERIFY(!d(x, 10).guidance_grad.defined());  // off: no gradient computed at all
        QCOMPARE(grads, 0);
        control->set_classifier_scale(2.5);
        const X0Eps p = d(x, 9);
        QCOMPARE(grads, 1);
        QVERIFY(at::allclose(p.guidance_grad, at::full_like(x, 2.5)));
    }
};

QTEST_APPLESS_MAIN(TestGuidance)
#include "test_guidance.moc"
