// Networks: shapes for the supported image sizes, the null class, config validation and the
// sinusoidal embedding against its closed form.
#include <cmath>
#include <functional>

#include <QtTest/QtTest>

#include <torch/torch.h>

#include "core/networks/fused_ops.h"
#include "core/networks/graphed_model.h"
#include "core/networks/network.h"
#include "core/networks/network_blocks.h"

using namespace dlab;

namespace {

// A small UNet in eval mode, without dropout. Its output layer starts at zero: every weight is
// perturbed so that the input and the conditioning show in the output.
Network perturbedNetwork() {
    NetworkConfig c;
    c.base_channels = 16;
    c.dropout = 0;
    Network net = make_network(c).value();
    torch::NoGradGuard g;
    for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
    net->eval();
    return net;
}

}  // namespace

class TestNetwork : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void unetShapes_data() {
        QTest::addColumn<int>("channels");
        QTest::addColumn<int>("size");
        QTest::addColumn<QVector<int>>("mult");
        QTest::addColumn<QVector<int>>("attn");
        QTest::newRow("28x28 grey") << 1 << 28 << QVector<int>{1, 2, 2} << QVector<int>{7};
        QTest::newRow("32x32 rgb") << 3 << 32 << QVector<int>{1, 2, 2} << QVector<int>{8};
        QTest::newRow("64x64 rgb") << 3 << 64 << QVector<int>{1, 2, 2, 2} << QVector<int>{16, 8};
    }
    void unetShapes() {
        QFETCH(int, channels);
        QFETCH(int, size);
        QFETCH(QVector<int>, mult);
        QFETCH(QVector<int>, attn);
        NetworkConfig c;
        c.in_channels = channels;
        c.image_size = size;
        c.base_channels = 16;
        c.channel_mult.assign(mult.begin(), mult.end());
        c.attention_resolutions.assign(attn.begin(), attn.end());
        auto net = make_network(c);
        QVERIFY2(net.ok(), net.error().c_str());
        torch::NoGradGuard g;
        const at::Tensor x = at::randn({3, channels, size, size});
        const at::Tensor out = net.value()->forward(x, at::tensor({0, 500, 999}), at::tensor({1, 9, 10}));
        QCOMPARE(out.sizes().vec(), x.sizes().vec());
        QVERIFY(out.isfinite().all().item<bool>());
        QVERIFY(net.value()->parameter_count() > 10000);
    }

    void labelsChangeTheOutput() {
        Network net = perturbedNetwork();
        torch::NoGradGuard g;
        const at::Tensor x = at::randn({1, 1, 28, 28}).expand({3, 1, 28, 28}).contiguous();
        const at::Tensor out = net->forward(x, at::full({3}, 300), at::tensor({2, 7, 10}));
        QVERIFY(!at::allclose(out[0], out[1]));
        QVERIFY(!at::allclose(out[0], out[2]));
        // An undefined label tensor means the null class.
        const at::Tensor un = net->forward(x.narrow(0, 0, 1), at::full({1}, 300), at::Tensor());
        // Batched and single-image convolutions may take different kernels: compare at float
        // round-off relative to the output's scale (labels differ by far more, checked above).
        const double scale = out.abs().max().item<double>();
        const double diff = (un[0] - out[2]).abs().max().item<double>();
        QVERIFY2(diff <= 1e-5 * scale, qPrintable(QString("max |diff| %1, scale %2").arg(diff).arg(scale)));
        QVERIFY((out[0] - out[2]).abs().max().item<double>() > 1e-2 * scale);
    }

    // Sampling (autograd off) runs SiLU and the residual adds in place; training (autograd on) keeps
    // what backward needs. Both give the same output, the input is left as it was, and the gradient
    // flows (a dtype-widening add stays out of place).
    void inPlaceSamplingMatchesTraining() {
        Network net = perturbedNetwork();
        const at::Tensor x = at::randn({2, 1, 28, 28}), t = at::tensor({100, 700}), y = at::tensor({3, 10});
        const at::Tensor x_copy = x.clone();
        at::Tensor sampled;
        {
            torch::NoGradGuard g;
            sampled = net->forward(x, t, y);
        }
        QVERIFY(at::equal(x, x_copy));
        const at::Tensor xg = x.clone().requires_grad_(true);
        const at::Tensor trained = net->forward(xg, t, y);
        QVERIFY2(at::allclose(sampled, trained.detach(), 1e-5, 1e-6),
                 qPrintable(QString("max |diff| %1").arg((sampled - trained.detach()).abs().max().item<double>())));
        trained.pow(2).sum().backward();
        QVERIFY(xg.grad().defined() && at::isfinite(xg.grad()).all().item<bool>() && xg.grad().abs().sum().item<double>() > 0);
        const at::Tensor h = at::ones({2, 3}, at::kFloat), wide = at::full({2, 3}, 0.5, at::kDouble);
        const at::Tensor sum = blocks::add_into(h, wide);
        QCOMPARE(sum.scalar_type(), at::kDouble);
        QCOMPARE(h[0][0].item<double>(), 1.0);  // not written into
    }

    // Inference keeps tensors made from parameters (network_blocks.h: Derived) between calls: a
    // change in place (as an optimizer, EMA or a load makes) must reach the next forward pass, which
    // must then equal the pass with autograd on (made anew each call).
    void derivedParametersFollowChangesInPlace() {
        Network net = perturbedNetwork();
        const at::Tensor x = at::randn({2, 1, 28, 28}), t = at::tensor({100, 700}), y = at::tensor({3, 10});
        at::Tensor before, after;
        {
            torch::NoGradGuard g;
            before = net->forward(x, t, y);
            QVERIFY(at::equal(net->forward(x, t, y), before));  // kept: the same result
            for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
            after = net->forward(x, t, y);
        }
        const at::Tensor fresh = net->forward(x, t, y).detach();  // autograd on: nothing kept
        QVERIFY(!at::allclose(after, before, 1e-3, 1e-4));
        QVERIFY2(at::allclose(after, fresh, 1e-5, 1e-6),
                 qPrintable(QString("max |diff| %1").arg((after - fresh).abs().max().item<double>())));
    }

    // A residual block given its time-embedding projection (at CUDA inference the UNet makes all
    // its blocks' in one product, each block a column slice of it) computes what it computes from
    // the embedding itself, in forward and in the decoder's forward_cat; the slice is what is used
    // (the embedding passed beside it is zeros).
    void resBlockTakesAGivenProjection() {
        blocks::ResBlock rb(24, 32, 64, 8, 0.0);
        torch::NoGradGuard g;
        for (auto& p : rb->parameters()) p.add_(at::randn_like(p) * 0.1);
        rb->eval();
        rb->temb_activated = true;
        const at::Tensor x = at::randn({3, 24, 6, 6}), temb = at::randn({3, 64});
        const at::Tensor e = at::linear(temb, rb->temb_proj->weight, rb->temb_proj->bias + rb->conv1->bias);
        const at::Tensor slice = at::cat({at::randn({3, 5}), e, at::randn({3, 7})}, 1).narrow(1, 5, 32);
        const at::Tensor own = rb(x, temb), given = rb(x, at::zeros_like(temb), slice);
        QVERIFY2(at::allclose(given, own, 1e-5, 1e-6), qPrintable(QString("max |diff| %1").arg((given - own).abs().max().item<double>())));
        QVERIFY(!at::allclose(rb(x, at::zeros_like(temb)), own, 1e-3, 1e-4));  // the embedding matters
        const at::Tensor x1 = x.narrow(1, 0, 16).contiguous(), x2 = x.narrow(1, 16, 8).contiguous();
        const at::Tensor own_cat = rb->forward_cat(x1, x2, temb), given_cat = rb->forward_cat(x1, x2, at::zeros_like(temb), slice);
        QVERIFY(at::allclose(given_cat, own_cat, 1e-5, 1e-6));
        QVERIFY(at::allclose(own_cat, own, 1e-5, 1e-6));
    }

    // The decoder's upsampling (nearest by 2, then a 3x3 convolution with padding 1) as four output
    // phases of one 2x2 convolution of the small map (subpixel_weight; CUDA inference interleaves
    // them in a kernel): phase (u, v) of output (2i + u, 2j + v) sits at (i + u, j + v). Checked on
    // odd and even sizes, borders included; a weight that is not 3x3 is refused.
    void subpixelWeightsGiveTheUpsamplingConvolution() {
        torch::NoGradGuard g;
        for (const auto& hw : {std::pair<int64_t, int64_t>{7, 7}, {4, 5}, {1, 3}}) {
            const int64_t H = hw.first, W = hw.second, Cin = 6, C = 5;
            const at::Tensor x = at::randn({2, Cin, H, W}), w = at::randn({C, Cin, 3, 3}), b = at::randn({C});
            const at::Tensor want = at::conv2d(at::upsample_nearest2d(x, {2 * H, 2 * W}), w, b, 1, 1);
            const at::Tensor w4 = subpixel_weight(w);
            QCOMPARE(w4.sizes(), (at::IntArrayRef{4 * C, Cin, 2, 2}));
            const at::Tensor z = at::conv2d(x, w4, {}, 1, 1);
            QCOMPARE(z.sizes(), (at::IntArrayRef{2, 4 * C, H + 1, W + 1}));
            at::Tensor got = at::empty_like(want);
            for (int64_t u = 0; u < 2; ++u)
                for (int64_t v = 0; v < 2; ++v)
                    got.slice(2, u, 2 * H, 2).slice(3, v, 2 * W, 2).copy_(
                        z.narrow(1, (2 * u + v) * C, C).narrow(2, u, H).narrow(3, v, W) + b.view({1, C, 1, 1}));
            QVERIFY2(at::allclose(got, want, 1e-4, 1e-5),
                     qPrintable(QString("%1x%2: max |diff| %3").arg(H).arg(W).arg((got - want).abs().max().item<double>())));
        }
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, subpixel_weight(at::randn({4, 4, 1, 1})));
    }

    // A GraphedModel replays CUDA graphs only for a CUDA network in a CUDA build; on the CPU (and in
    // this Debian build) it is the plain forward pass, and model_function gives the same outputs.
    void graphedModelIsTheForwardPassOffCuda() {
        Network net = perturbedNetwork();
        torch::NoGradGuard g;
        auto graphed = std::make_shared<GraphedModel>(net);
        QVERIFY(!graphed->active());
        QCOMPARE(graphed->captured(), 0);
        const at::Tensor x = at::randn({2, 1, 28, 28}), t = at::full({2}, 300, at::kLong), y = at::tensor({3, 10});
        const at::Tensor direct = net->forward(x, t, y);
        QVERIFY(at::equal((*graphed)(x, t, y), direct));
        QVERIFY(at::equal(model_function(net, graphed)(x, t, y), direct));
        QVERIFY(at::equal(model_function(net)(x, t, y), direct));
        QCOMPARE(graphed->captured(), 0);
    }

    // to_channels_last (CUDA inference, network.h) changes the weights' layout, not their values: the
    // same outputs with autograd off and on (on the CPU the convolutions read either layout), the
    // output in the plain layout; networks with text or frames decline and keep their layout.
    void channelsLastKeepsTheFunction() {
        Network net = perturbedNetwork();
        const at::Tensor x = at::randn({2, 1, 28, 28}), t = at::tensor({100, 700}), y = at::tensor({3, 10});
        at::Tensor before;
        {
            torch::NoGradGuard g;
            before = net->forward(x, t, y);
        }
        int64_t weights4d = 0;
        for (const auto& p : net->parameters()) weights4d += p.dim() == 4;
        QVERIFY(weights4d > 10);
        QVERIFY(net->to_channels_last());
        for (const auto& p : net->parameters())
            if (p.dim() == 4) QVERIFY(p.is_contiguous(at::MemoryFormat::ChannelsLast));
        at::Tensor after;
        {
            torch::NoGradGuard g;
            after = net->forward(x, t, y);
        }
        QVERIFY(after.is_contiguous());
        const double scale = before.abs().max().item<double>();
        const double diff = (after - before).abs().max().item<double>();
        QVERIFY2(scale > 1e-3 && diff <= 1e-5 * scale, qPrintable(QString("max |diff| %1, scale %2").arg(diff).arg(scale)));
        const at::Tensor trained = net->forward(x, t, y);  // autograd on: the plain layout's path
        QVERIFY((trained.detach() - before).abs().max().item<double>() <= 1e-5 * scale);

        NetworkConfig video;
        video.base_channels = 16;
        video.frames = 4;
        Network v = make_network(video).value();
        QVERIFY(!v->to_channels_last());
        for (const auto& p : v->parameters()) QVERIFY(p.is_contiguous());
        NetworkConfig mlp;
        mlp.kind = NetworkKind::Mlp;
        mlp.in_channels = 2;
        QVERIFY(!make_network(mlp).value()->to_channels_last());
    }

    // Half-precision inference (network.h: to_half) computes the same function to the precision of
    // the type: bf16 here (LibTorch's CPU kernels take it; CUDA takes fp16 too), float32 out.
    void halfKeepsTheFunction() {
        torch::manual_seed(3);
        Network net = perturbedNetwork();
        const at::Tensor x = at::randn({2, 1, 28, 28}), t = at::tensor({100, 700}), y = at::tensor({3, 10});
        torch::NoGradGuard g;
        const at::Tensor before = net->forward(x, t, y);
        const at::Tensor other = net->forward(x, t, at::tensor({5, 1}));  // another class: how far outputs move
        QVERIFY(net->to_half(at::kBFloat16));
        for (const auto& p : net->parameters()) QCOMPARE(p.scalar_type(), at::kBFloat16);
        const at::Tensor after = net->forward(x, t, y);
        QCOMPARE(after.scalar_type(), at::kFloat);
        QVERIFY(after.is_contiguous());
        QCOMPARE(after.sizes(), before.sizes());
        // bf16 keeps 8 bits of mantissa: a relative error of a few 1e-3 a layer, a few 1e-2 over this
        // random network's ~40 layers (0.06 for some seeds); well below what another label changes.
        const double rel = ((after - before).norm() / before.norm()).item<double>();
        const double moved = ((other - before).norm() / before.norm()).item<double>();
        QVERIFY2(std::isfinite(rel) && rel < 0.1 && rel < 0.3 * moved,
                 qPrintable(QString("relative error %1 (another label moves the output by %2)").arg(rel).arg(moved)));
        QVERIFY2(rel > 1e-5, "the bf16 network gave float32's answer exactly: it did not run in bf16");
        QVERIFY(!net->to_half(at::kDouble));  // only the two half types
        NetworkConfig video;
        video.base_channels = 16;
        video.frames = 4;
        Network v = make_network(video).value();
        QVERIFY(!v->to_half(at::kBFloat16));
        for (const auto& p : v->parameters()) QCOMPARE(p.scalar_type(), at::kFloat);
    }

    // The inference precision the CLI and GUI choose (fused_ops.h): parsed by name, set for the
    // models loaded afterwards, anything but the three types refused.
    void inferencePrecisionIsChosenByName() {
        QCOMPARE(parse_precision("fp16").value(), at::kHalf);
        QCOMPARE(parse_precision("bfloat16").value(), at::kBFloat16);
        QCOMPARE(parse_precision("fp32").value(), at::kFloat);
        QVERIFY(!parse_precision("fp8"));
        QVERIFY(!parse_precision(""));
        QCOMPARE(precision_name(at::kBFloat16), std::string("bf16"));
        const at::ScalarType before = half_inference_dtype();
        set_inference_precision(at::kHalf);
        QCOMPARE(half_inference_dtype(), at::kHalf);
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument, set_inference_precision(at::kDouble));
        QCOMPARE(half_inference_dtype(), at::kHalf);  // a refused type changes nothing
        set_inference_precision(before);
        QCOMPARE(half_inference_dtype(), before);
    }

    void blockDropoutKeepsItsLaw() {
        // Training: each value kept with probability 1 - p and scaled by 1 / (1 - p), so the mean is
        // kept; evaluation: the identity. 1e6 values: the kept fraction within 5 standard errors.
        torch::nn::Dropout drop(torch::nn::DropoutOptions(0.25));
        const at::Tensor h = at::full({10, 100, 1000}, 2.0);
        at::manual_seed(3);
        const at::Tensor y = blocks::block_dropout(drop, h);
        const double kept = (y != 0).to(at::kDouble).mean().item<double>();
        QVERIFY2(std::abs(kept - 0.75) < 5 * std::sqrt(0.75 * 0.25 / 1e6), qPrintable(QString::number(kept)));
        QVERIFY(at::all((y == 0) | (y == 2.0 / 0.75)).item<bool>());
        // gradients flow through the kept values only, with the same scale
        const at::Tensor x = at::randn({4, 8, 5, 5}).requires_grad_(true);
        const at::Tensor z = blocks::block_dropout(drop, x);
        z.sum().backward();
        QVERIFY(at::allclose(x.grad(), (z != 0).to(at::kFloat) / 0.75));
        drop->eval();
        QVERIFY(at::equal(blocks::block_dropout(drop, h), h));
    }

    void mlpDenoiser() {
        NetworkConfig c;
        c.kind = NetworkKind::Mlp;
        c.in_channels = 2;
        c.num_classes = 3;
        auto net = make_network(c);
        QVERIFY(net.ok());
        const at::Tensor out = net.value()->forward(at::randn({5, 2}), at::arange(5), at::tensor({0, 1, 2, 3, 0}));
        QCOMPARE(out.sizes().vec(), (std::vector<int64_t>{5, 2}));
    }

    void badConfigs() {
        NetworkConfig c;
        c.image_size = 30;  // 30 -> 15 -> cannot halve again
        QVERIFY(QString::fromStdString(make_network(c).error()).contains("cannot be halved"));
        c = NetworkConfig{};
        c.base_channels = 12;  // 12 not divisible by 8 groups
        QVERIFY(QString::fromStdString(make_network(c).error()).contains("GroupNorm"));
        c = NetworkConfig{};
        c.channel_mult = {};
        QVERIFY(!make_network(c).ok());
    }

    void boundsAreCheckedBeforeDividing() {
        // Zero groups or heads used to divide by zero (SIGFPE) before any check; huge sizes used
        // to build the network first. Each is now a message naming the field and the range.
        const std::pair<std::function<void(NetworkConfig&)>, const char*> cases[] = {
            {[](NetworkConfig& c) { c.groups = 0; }, "groups is 0"},
            {[](NetworkConfig& c) { c.attention_heads = 0; }, "attention_heads is 0"},
            {[](NetworkConfig& c) { c.num_res_blocks = 1000000; }, "num_res_blocks is 1000000"},
            {[](NetworkConfig& c) { c.base_channels = 100000; }, "base_channels is 100000"},
            {[](NetworkConfig& c) { c.channel_mult = std::vector<int64_t>(40, 1); }, "channel_mult (levels) is 40"},
            {[](NetworkConfig& c) { c.image_size = -28; }, "image_size is -28"},
            {[](NetworkConfig& c) { c.num_classes = -1; }, "num_classes is -1"},
        };
        for (const auto& [edit, message] : cases) {
            NetworkConfig c;
            edit(c);
            const Status st = c.validate();
            QVERIFY2(!st.ok() && QString::fromStdString(st.error()).contains(message), st.ok() ? message : st.error().c_str());
            QVERIFY(!make_network(c).ok());
        }
    }

    void lowerBoundsHold() {
        // min_parameters() is what a model file is checked against before the network is built: it
        // must never exceed the real count, or good files would be refused.
        std::vector<NetworkConfig> configs(6);
        configs[1].base_channels = 64;
        configs[1].num_res_blocks = 2;
        configs[2].channel_mult = {1, 2, 2, 4};
        configs[2].image_size = 32;
        configs[3].learn_sigma = true;
        configs[3].num_classes = 0;
        configs[4].kind = NetworkKind::Mlp;
        configs[4].in_channels = 2;
        configs[5].kind = NetworkKind::Mlp;
        configs[5].mlp_layers = 1;
        configs[5].mlp_hidden = 16;
        for (const NetworkConfig& c : configs) {
            auto net = make_network(c);
            QVERIFY2(net.ok(), net.ok() ? "" : net.error().c_str());
            const int64_t real = net.value()->parameter_count();
            QVERIFY2(c.min_parameters() <= real && c.min_parameters() * 64 > real,
                     qPrintable(QString("bound %1, real %2").arg(c.min_parameters()).arg(real)));
            QVERIFY(c.min_activation_bytes() > 0);
        }
    }

    void timestepEmbeddingClosedForm() {
        const at::Tensor t = at::tensor({0.0, 1.0, 250.0, 999.0});
        const at::Tensor e = timestep_embedding(t, 16);
        QCOMPARE(e.sizes().vec(), (std::vector<int64_t>{4, 16}));
        for (int b = 0; b < 4; ++b)
            for (int i = 0; i < 8; ++i) {
                const double f = std::exp(-std::log(10000.0) * i / 8.0);
                const double tv = t[b].item<double>();
                QVERIFY(std::abs(e[b][i].item<double>() - std::cos(tv * f)) < 1e-4);
                QVERIFY(std::abs(e[b][8 + i].item<double>() - std::sin(tv * f)) < 1e-4);
            }
    }
};

QTEST_APPLESS_MAIN(TestNetwork)
#include "test_network.moc"
