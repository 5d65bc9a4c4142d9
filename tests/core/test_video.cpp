// Video diffusion's data and score distillation's pieces: the moving clips' labels against the
// centroid tracker, the SDS gradient against its formula on a stub denoiser, the voxel renderer's
// transmittance against the closed form of a uniform slab.
#include <QtTest/QtTest>

#include <cmath>
#include <numeric>

#include <torch/torch.h>

#include "core/test_data.h"

#include "core/distillation/sds.h"
#include "core/distillation/sds_run.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/networks/network.h"
#include "core/training/trainer.h"
#include "core/sampling/sampler.h"
#include "core/video/moving_fashion.h"

using namespace dlab;

class TestVideo : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void movingClipsMotionMatchesTheTracker() {
        const LabelledData items = test::fashion_subset(200);
        MovingConfig c;
        auto clips = make_moving_clips(items, c, 7, 0, 64);
        QVERIFY2(clips.ok(), clips.error().c_str());
        QCOMPARE(clips->clips.sizes().vec(), (std::vector<int64_t>{64, 16, 1, 48, 48}));
        QVERIFY(clips->clips.min().item<float>() >= -1 && clips->clips.max().item<float>() <= 1);
        // Every direction appears; the tracker finds each clip's labelled direction.
        QCOMPARE(std::get<0>(at::_unique(clips->directions)).size(0), int64_t(kMotionDirections));
        const MotionEstimate m = estimate_motion(clips->clips);
        QVERIFY(at::equal(m.directions, clips->directions));
        // The centroid moves as the item: 4 frames of 2 px per moving axis.
        for (int64_t i = 0; i < 64; ++i) {
            const auto step = motion_step(int(clips->directions[i].item<int64_t>()));
            const double expected = 8.0 * std::sqrt(double(step[0] * step[0] + step[1] * step[1]));
            QVERIFY2(std::abs(m.distance[i].item<double>() - expected) < 0.6,
                     qPrintable(QString("clip %1: %2 px, expected %3").arg(i).arg(m.distance[i].item<double>()).arg(expected)));
        }
        // The item stays on the canvas and bounces: positions within [0, S - item], some motion reversed.
        QVERIFY(clips->positions.min().item<int64_t>() >= 0 && clips->positions.max().item<int64_t>() <= 48 - 20);
        const at::Tensor v = clips->positions.narrow(1, 1, 15) - clips->positions.narrow(1, 0, 15);
        QVERIFY(((v.narrow(1, 1, 14) * v.narrow(1, 0, 14)) < 0).any().item<bool>());
        // The classes are the items'; a clip is the same in any batch.
        QVERIFY(clips->classes.min().item<int64_t>() >= 0 && clips->classes.max().item<int64_t>() <= 9);
        auto part = make_moving_clips(items, c, 7, 10, 5);
        QVERIFY(at::equal(part->clips, clips->clips.narrow(0, 10, 5)));
        QVERIFY(!at::equal(make_moving_clips(items, c, 8, 10, 5)->clips, part->clips));
        // Bad settings are refused with a message.
        MovingConfig tight = c;
        tight.canvas = 30;
        QVERIFY(QString::fromStdString(make_moving_clips(items, tight, 0, 0, 1).error()).contains("at least 36 px"));
        // An empty clip's centroid is the canvas centre, and it does not move.
        const MotionEstimate still = estimate_motion(at::full({1, 5, 1, 9, 9}, -1.0f));
        QCOMPARE(still.distance.item<double>(), 0.0);
    }

    void temporalLayersAreTheIdentityOnOneFrame() {
        // A video UNet (temporal attention after each spatial attention) with every weight random:
        // on clips of one frame it computes exactly the per-frame model with the same spatial
        // weights; on clips of 4 frames each frame depends on the others.
        NetworkConfig image;
        image.base_channels = 16;
        image.channel_mult = {1, 2};
        image.attention_resolutions = {14};
        image.dropout = 0;
        NetworkConfig one = image, four = image;
        one.frames = 1;
        four.frames = 4;
        Network a = make_network(image).value(), b = make_network(one).value(), c = make_network(four).value();
        torch::NoGradGuard g;
        at::manual_seed(5);
        for (auto& p : b->named_parameters()) p.value().copy_(at::randn_like(p.value()) * 0.1);
        for (auto& p : a->named_parameters()) p.value().copy_(b->named_parameters()[p.key()]);
        for (auto& p : c->named_parameters()) p.value().copy_(b->named_parameters().contains(p.key()) ? b->named_parameters()[p.key()] : p.value());
        for (auto& p : c->named_parameters())
            if (p.key().find("_tattn") != std::string::npos) p.value().copy_(b->named_parameters()[p.key()]);
        for (Network n : {a, b, c}) n->eval();
        QVERIFY(b->parameter_count() > a->parameter_count());
        const at::Tensor x = at::randn({8, 1, 28, 28});
        const at::Tensor t = at::tensor({5, 5, 5, 5, 700, 700, 700, 700}, at::kLong);
        const at::Tensor y = at::tensor({3, 3, 3, 3, 10, 10, 10, 10}, at::kLong);
        const at::Tensor per_frame = a->forward(x, t, y);
        QVERIFY(at::allclose(b->forward(x, t, y), per_frame, 1e-5, 1e-6));
        const at::Tensor clips = c->forward(x, t, y);
        QVERIFY(!at::allclose(clips, per_frame, 1e-3, 1e-3));
        // A frame's output depends on the other frames of its clip, not on another clip.
        at::Tensor x2 = x.clone();
        x2[1].add_(1.0);
        const at::Tensor moved = c->forward(x2, t, y);
        QVERIFY(!at::allclose(moved[0], clips[0], 1e-4, 1e-4));
        QVERIFY(at::allclose(moved.narrow(0, 4, 4), clips.narrow(0, 4, 4), 1e-5, 1e-6));
        // A batch that is not whole clips is refused.
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, c->forward(x.narrow(0, 0, 6), t.narrow(0, 0, 6), y.narrow(0, 0, 6)));
    }

    void videoModelTrainsOnMovingClips() {
        // A short real run of the factorised video UNet on moving clips (4 frames of 28x28, items of
        // 12 px): the trainer keeps clips whole and the loss falls.
        MovingConfig mc;
        mc.frames = 4;
        mc.canvas = 28;
        mc.item = 12;
        VideoTraining video{moving_clip_source(test::fashion_subset(256), mc, 3)};
        auto [frames, labels] = video.clips(0, 3);
        QCOMPARE(frames.sizes().vec(), (std::vector<int64_t>{12, 1, 28, 28}));
        QVERIFY(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < kVideoLabels);
        QVERIFY(!at::equal(video.clips(1, 3).first, frames));
        ModelConfig m;
        m.network.base_channels = 16;
        m.network.channel_mult = {1, 2};
        m.network.attention_resolutions = {14};
        m.network.num_classes = kVideoLabels;
        m.network.frames = mc.frames;
        TrainConfig tc;
        tc.steps = 30;
        tc.batch = 4;
        tc.lr = 2e-3;
        tc.warmup = 0;
        tc.log_every = 10;
        tc.checkpoint_every = 30;
        std::vector<double> losses;
        TrainHooks hooks;
        hooks.on_progress = [&](const TrainProgress& p) { losses.push_back(p.loss); };
        QTemporaryDir dir;
        const LabelledData items = test::fashion_subset(16);
        QVERIFY(!train(m, tc, items, c10::kCPU, dir.filePath("a").toStdString(), TrainStart::New, hooks).ok());  // no clips
        hooks.video = &video;
        auto r = train(m, tc, items, c10::kCPU, dir.filePath("b").toStdString(), TrainStart::New, hooks);
        QVERIFY2(r.ok(), r.error().c_str());
        qInfo("video UNet loss %.3f -> %.3f", losses.front(), losses.back());
        QVERIFY2(losses.back() < 0.8 * losses.front(), qPrintable(QString("%1 -> %2").arg(losses.front()).arg(losses.back())));
        auto model = load_model(dir.filePath("b/model.safetensors").toStdString(), c10::kCPU);
        QVERIFY2(model.ok(), model.error().c_str());
        QCOMPARE(model->config.network.frames, int64_t(4));
    }

    void sdsGradientIsTheWeightedNoiseResidual() {
        // A stub denoiser: eps_hat = 0.5 x_t, plus 1 when conditional. With guidance s the
        // guided prediction is 0.5 x_t + s, so the gradient must be (1 - abar_t)(0.5 x_t + s - eps).
        auto schedule = NoiseSchedule::create(ScheduleConfig{}).value();
        const int64_t null_label = 10;
        ModelFn stub = [&](const at::Tensor& x, const at::Tensor&, const at::Tensor& y) {
            if (!y.defined()) return 0.5 * x + 1.0;  // a model without labels: its only output
            return 0.5 * x + (y != null_label).to(at::kFloat).view({-1, 1, 1, 1});
        };
        const at::Tensor x = at::randn({6, 1, 8, 8}, make_generator(1));
        SdsConfig c;
        c.guidance = 7.5;
        at::Generator gen = make_generator(2);
        SdsSample s;
        const at::Tensor g = sds_gradient(stub, schedule, x, at::full({6}, 3, at::kLong), null_label, c, gen, &s);
        const at::Tensor abar = schedule.alpha_bars().to(at::kFloat).index_select(0, s.t).view({6, 1, 1, 1});
        const at::Tensor xt = abar.sqrt() * x + (1 - abar).sqrt() * s.eps;
        QVERIFY(at::allclose(s.eps_hat, 0.5 * xt + 7.5, 1e-5, 1e-5));
        QVERIFY(at::allclose(g, (1 - abar) * (0.5 * xt + 7.5 - s.eps), 1e-5, 1e-5));
        // t within [0.02, 0.98] T; the weight is 1 - abar_t.
        QVERIFY(s.t.min().item<int64_t>() >= 20 && s.t.max().item<int64_t>() <= 980);
        QVERIFY(at::allclose(s.weight, 1 - abar.flatten()));
        // No labels: the plain model, no guidance.
        at::Generator gen2 = make_generator(2);
        SdsSample u;
        sds_gradient(stub, schedule, x, at::Tensor(), null_label, c, gen2, &u);
        QVERIFY(at::equal(u.t, s.t));
        QVERIFY(at::allclose(u.eps_hat, 0.5 * xt + 1.0, 1e-5, 1e-5));
    }

    void voxelRendererMatchesAUniformSlab() {
        const int64_t n = 16;
        const double sigma = 1.5, c = 0.4;
        at::Tensor transmittance;
        // A full cube: every ray crosses length 2.
        const at::Tensor full = at::full({n, n, n}, sigma), bright = at::full({n, n, n}, c);
        const at::Tensor img = render_voxels(full, bright, 0.0, n, -1.0, &transmittance);
        QCOMPARE(img.sizes().vec(), (std::vector<int64_t>{1, n, n}));
        QVERIFY(at::allclose(transmittance, at::full({n, n}, std::exp(-sigma * 2)), 1e-5, 1e-6));
        const double T = std::exp(-sigma * 2);
        QVERIFY(at::allclose(img, at::full({1, n, n}, (1 - T) * c + T * -1.0), 1e-5, 1e-6));
        // Half the depth (the far half): length 1.
        at::Tensor half = at::zeros({n, n, n});
        half.narrow(0, n / 2, n / 2).fill_(sigma);
        render_voxels(half, bright, 0.0, n, -1.0, &transmittance);
        QVERIFY(at::allclose(transmittance, at::full({n, n}, std::exp(-sigma)), 1e-5, 1e-6));
        // The left half of the columns, seen from the side (90 degrees): again length 1 on every ray.
        at::Tensor left = at::zeros({n, n, n});
        left.narrow(2, 0, n / 2).fill_(sigma);
        render_voxels(left, bright, M_PI / 2, n, -1.0, &transmittance);
        QVERIFY(at::allclose(transmittance, at::full({n, n}, std::exp(-sigma)), 1e-4, 1e-5));
        // Seen from the front, half the rays miss it entirely.
        render_voxels(left, bright, 0.0, n, -1.0, &transmittance);
        QVERIFY(at::allclose(transmittance.narrow(1, n / 2, n / 2), at::ones({n, n / 2})));
        // Differentiable in density and brightness.
        at::Tensor d = full.clone().requires_grad_(true), b = bright.clone().requires_grad_(true);
        render_voxels(d, b, 0.3, n).mean().backward();
        QVERIFY(d.grad().defined() && d.grad().abs().sum().item<double>() > 0);
        QVERIFY(b.grad().defined() && b.grad().abs().sum().item<double>() > 0);
    }

    void sdsRunsLowerTheirPseudoLoss() {
        // Short real runs with the bundled class model: an image and a voxel scene each move to
        // where the model's noise prediction fits better (the pseudo-loss w ||eps_hat - eps||^2 falls).
        auto model = load_model(resolve_model("default").value(), c10::kCPU);
        QVERIFY2(model.ok(), model.error().c_str());
        for (bool three_d : {false, true}) {
            SdsRunConfig c;
            c.label = 7;
            c.three_d = three_d;
            c.views = 2;
            auto run = SdsRun::create(model.value(), c);
            QVERIFY2(run.ok(), run.error().c_str());
            const int n = three_d ? 60 : 150, k = n / 5;
            std::vector<double> l;
            for (int i = 0; i < n; ++i) l.push_back(run.value()->step());
            const double first = std::accumulate(l.begin(), l.begin() + k, 0.0) / k;
            const double last = std::accumulate(l.end() - k, l.end(), 0.0) / k;
            qInfo("%s: pseudo-loss %.2f -> %.2f", three_d ? "3-D" : "2-D", first, last);
            QVERIFY2(last < 0.7 * first, qPrintable(QString("%1 -> %2").arg(first).arg(last)));
            const at::Tensor img = run.value()->image();
            QCOMPARE(img.sizes().vec(), (std::vector<int64_t>{1, 1, 28, 28}));
            QVERIFY(at::isfinite(img).all().item<bool>());
            if (three_d) QVERIFY(!at::equal(run.value()->view(0.0), run.value()->view(M_PI / 2)));
        }
        SdsRunConfig bad;
        bad.label = 10;
        QVERIFY(QString::fromStdString(SdsRun::create(model.value(), bad).error()).contains("outside 0..9"));
    }
};

QTEST_APPLESS_MAIN(TestVideo)
#include "test_video.moc"
