// diffusionlab-cli bench: time denoising steps and training of a model config
#include "app/cli/commands.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include <torch/torch.h>

#include "app/args.h"
#include "app/cli/cli_util.h"
#include "core/io/model_catalog.h"
#include "core/io/model_io.h"
#include "core/networks/fused_ops.h"
#include "core/networks/graphed_model.h"
#include "core/networks/network.h"
#include "core/sampling/generate.h"
#include "core/runtime/runtime.h"
#include "core/training/kernel_profile.h"

namespace dlab::app {

namespace {

// The project's fused kernels against a float64 reference of the LibTorch ops on random inputs
// (several shapes, odd sizes included), then timed against the float32 LibTorch ops.
int check_fused(c10::Device dev) {
    torch::NoGradGuard no_grad;
    at::manual_seed(7);
    const auto opt = at::TensorOptions().device(dev);
    struct Case {
        int64_t n, c, h, w, groups;
        bool bias, silu;
    };
    const Case cases[] = {{2, 32, 28, 28, 8, false, true}, {2, 64, 14, 14, 8, true, true}, {512, 128, 7, 7, 8, true, true},
                          {3, 96, 7, 7, 32, false, false}, {1, 8, 5, 3, 2, true, false}, {256, 64, 28, 28, 8, true, true},
                          // The default model's batch-256 shape: in channels-last, blocks of two groups.
                          {512, 32, 28, 28, 8, true, true},
                          // Its decoder's 96-channel input in training (12-channel groups: vectors of 4,
                          // 3 threads a position in the channels-last backward).
                          {128, 96, 28, 28, 8, false, true}};
    bool ok = true;
    auto sync = [&] { (void)at::ones({1}, opt).sum().item<float>(); };
    // Mean ms of one call of f over `iters` calls, after 5 untimed ones.
    auto time_ms = [&](const std::function<void()>& f, int iters) {
        for (int i = 0; i < 5; ++i) f();
        sync();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) f();
        sync();
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
    };
    // Random inputs of a case in type t, in either layout: plain [N, C, H, W] or channels-last (the
    // UNet's on CUDA, network.h).
    struct Inputs {
        at::Tensor x, bias, gamma, beta;
    };
    auto inputs = [&](const Case& k, bool nhwc, at::ScalarType t) {
        const auto o = opt.dtype(t);
        const at::Tensor x0 = (at::randn({k.n, k.c, k.h, k.w}, opt) * 3 + 1.5).to(t);
        Inputs in;
        in.x = nhwc ? x0.contiguous(at::MemoryFormat::ChannelsLast) : x0;
        in.bias = k.bias ? at::randn({k.n, k.c}, o) : at::Tensor();
        in.gamma = at::randn({k.c}, o);
        in.beta = at::randn({k.c}, o);
        return in;
    };
    // act(GroupNorm(x + bias)) by LibTorch's ops, in the inputs' type.
    auto unfused = [](const Case& k, const at::Tensor& in, const at::Tensor& b, const at::Tensor& g, const at::Tensor& be) {
        at::Tensor r = at::group_norm(b.defined() ? in + b.unsqueeze(-1).unsqueeze(-1) : in, k.groups, g, be, 1e-5);
        return k.silu ? at::silu(r) : r;
    };
    // The same in float64: the reference.
    auto reference = [&](const Case& k, const Inputs& in) {
        return unfused(k, in.x.to(at::kDouble), in.bias.defined() ? in.bias.to(at::kDouble) : at::Tensor(),
                       in.gamma.to(at::kDouble), in.beta.to(at::kDouble));
    };
    for (const Case& k : cases)
      for (const bool nhwc : {false, true}) {
        const Inputs in = inputs(k, nhwc, at::kFloat);
        const at::Tensor &x = in.x, &bias = in.bias, &gamma = in.gamma, &beta = in.beta;
        if (!fused_group_norm_usable(x, bias, k.groups))
            return failure("bench --check-fused: the fused kernel cannot run here (it needs a build with nvcc "
                           "and DLAB_WITH_FUSED_CUDA=ON, a CUDA device and DLAB_FUSED_KERNELS not 0)");
        const at::Tensor ref = reference(k, in);
        const double plain_ms = time_ms([&] { (void)unfused(k, x, bias, gamma, beta); }, 200);
        // Both kernels (fused_ops.h): three passes over global memory, and one read into shared memory;
        // channels-last, also the default's choice (0): a sums pass, then the streaming norm.
        for (const int kernel : {1, 2, 0}) {
            if (kernel == 0 && !nhwc) continue;
            const at::Tensor y = fused_group_norm_act(x, bias, k.groups, gamma, beta, 1e-5, k.silu, kernel);
            const double rel = ((y.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
            // The bias as a column slice of a wider matrix (the UNet's one time-embedding product),
            // read in place: the same output to round-off (not bit for bit: with several groups a
            // block, kernel 2 adds the groups' sums with shared-memory atomics, in any order).
            const bool strided_same =
                !bias.defined() ||
                ((fused_group_norm_act(x, at::cat({at::zeros({k.n, 8}, opt), bias, at::zeros({k.n, 16}, opt)}, 1).narrow(1, 8, k.c),
                                       k.groups, gamma, beta, 1e-5, k.silu, kernel) - y).norm() / y.norm()).item<double>() < 1e-6;
            // The output keeps the input's layout (the next convolution reads it as such).
            const bool good = std::isfinite(rel) && rel < 1e-5 && y.strides() == x.strides() && strided_same;
            ok = ok && good;
            const double fused_ms =
                time_ms([&] { (void)fused_group_norm_act(x, bias, k.groups, gamma, beta, 1e-5, k.silu, kernel); }, 200);
            const double gbs = 2.0 * double(x.numel()) * 4 / (fused_ms * 1e6);  // one read and one write
            std::printf("group norm%s%s [%lld, %lld, %lld, %lld]%s / %lld groups, %s: relative error %.2e against "
                        "float64%s %s; fused %.4f ms (%.0f GB/s), LibTorch ops %.4f ms (%.2fx)\n",
                        k.bias ? " + bias" : "", k.silu ? " + SiLU" : "", (long long)k.n, (long long)k.c, (long long)k.h,
                        (long long)k.w, nhwc ? " channels-last" : "", (long long)k.groups,
                        kernel == 0 ? "default (sums pass + streaming)" : kernel == 1 ? "kernel 1" : "kernel 2", rel,
                        strided_same ? "" : "; a column-slice bias gave another result", good ? "ok" : "WRONG",
                        fused_ms, gbs, plain_ms, plain_ms / fused_ms);
        }
      }
    // Half-precision inputs (network.h: to_half) through kernel 2: the same check on inputs rounded
    // to the type, against float64; the output's rounding bounds the error (fp16 ~5e-4, bf16 ~4e-3).
    for (const at::ScalarType t : {at::kHalf, at::kBFloat16})
        for (const Case& k : {cases[0], cases[1], cases[3], cases[4], cases[5], cases[6]})
            for (const bool nhwc : {false, true}) {
                const Inputs in = inputs(k, nhwc, t);
                const at::Tensor &x = in.x, &bias = in.bias;
                if (!fused_group_norm_usable(x, bias, k.groups)) {
                    std::printf("group norm [%lld, %lld, %lld, %lld] %s: not usable\n", (long long)k.n, (long long)k.c,
                                (long long)k.h, (long long)k.w, c10::toString(t));
                    ok = false;
                    continue;
                }
                const at::Tensor y = fused_group_norm_act(x, bias, k.groups, in.gamma, in.beta, 1e-5, k.silu);
                const at::Tensor ref = reference(k, in);
                const double rel = ((y.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
                const bool good = std::isfinite(rel) && rel < (t == at::kHalf ? 2e-3 : 1.5e-2) && y.strides() == x.strides() &&
                                  y.scalar_type() == t;
                ok = ok && good;
                std::printf("group norm%s%s [%lld, %lld, %lld, %lld]%s / %lld groups, %s: relative error %.2e against float64 %s\n",
                            k.bias ? " + bias" : "", k.silu ? " + SiLU" : "", (long long)k.n, (long long)k.c, (long long)k.h,
                            (long long)k.w, nhwc ? " channels-last" : "", (long long)k.groups, c10::toString(t), rel,
                            good ? "ok" : "WRONG");
            }
    // Training (fused_group_norm_act_train, plain and channels-last, float32): the output and the gradients of
    // x, bias, gamma and beta for a random upstream gradient, against float64 autograd through
    // LibTorch's ops; forward + backward timed against the same in float32.
    {
        torch::AutoGradMode grad_on(true);
        auto leaf = [](const at::Tensor& t) { return t.defined() ? t.detach().requires_grad_(true) : at::Tensor(); };
        auto rel = [](const at::Tensor& a, const at::Tensor& ref) {
            return ((a.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
        };
        for (const Case& k : cases)
          for (const bool nhwc : {false, true}) {
            const Inputs in = inputs(k, nhwc, at::kFloat);
            const at::Tensor w = at::randn(in.x.sizes(), opt);
            const at::Tensor x = leaf(in.x), b = leaf(in.bias), g = leaf(in.gamma), be = leaf(in.beta);
            const at::Tensor y = fused_group_norm_act_train(x, b, k.groups, g, be, 1e-5, k.silu);
            (y * w).sum().backward();
            const at::Tensor xd = leaf(in.x.to(at::kDouble)), bd = leaf(in.bias.defined() ? in.bias.to(at::kDouble) : at::Tensor()),
                             gd = leaf(in.gamma.to(at::kDouble)), bed = leaf(in.beta.to(at::kDouble));
            const at::Tensor yd = unfused(k, xd, bd, gd, bed);
            (yd * w.to(at::kDouble)).sum().backward();
            const double ey = rel(y.detach(), yd.detach()), ex = rel(x.grad(), xd.grad()), eg = rel(g.grad(), gd.grad()),
                         ebe = rel(be.grad(), bed.grad()), eb = b.defined() ? rel(b.grad(), bd.grad()) : 0.0;
            const double worst = std::max({ey, ex, eg, ebe, eb});
            // Channels-last training: the kernel must take the layout (not fall back) and keep it.
            const bool layout_kept = y.strides() == x.strides() && x.grad().strides() == x.strides();
            const bool good = std::isfinite(worst) && worst < 1e-4 && layout_kept && fused_group_norm_train_usable(x, b, k.groups);
            ok = ok && good;
            // One forward + backward pass of f, the gradients reset first.
            auto pass = [&](const std::function<at::Tensor()>& f) {
                return [&, f] {
                    for (const at::Tensor* t : {&x, &b, &g, &be})
                        if (t->defined()) t->mutable_grad() = at::Tensor();
                    (f() * w).sum().backward();
                };
            };
            const double fused_ms = time_ms(pass([&] { return fused_group_norm_act_train(x, b, k.groups, g, be, 1e-5, k.silu); }), 100);
            const double plain_ms = time_ms(pass([&] { return unfused(k, x, b, g, be); }), 100);
            std::printf("training group norm%s%s [%lld, %lld, %lld, %lld]%s / %lld groups: relative errors y %.1e, dx %.1e, "
                        "dbias %.1e, dgamma %.1e, dbeta %.1e against float64%s %s; forward + backward %.4f ms, LibTorch ops "
                        "%.4f ms (%.2fx)\n",
                        k.bias ? " + bias" : "", k.silu ? " + SiLU" : "", (long long)k.n, (long long)k.c, (long long)k.h,
                        (long long)k.w, nhwc ? " channels-last" : "", (long long)k.groups, ey, ex, eb, eg, ebe,
                        layout_kept ? "" : " (layout changed)", good ? "ok" : "WRONG", fused_ms, plain_ms, plain_ms / fused_ms);
          }
    }
    // The residual kernels (inference): act(GroupNorm(cat(x1, x2))) without the concatenation, and
    // h + r + bias, against float64, in each type; timed against LibTorch's ops in float32.
    {
        struct CatCase {
            int64_t n, c1, c2, hw, groups;
        };
        for (const at::ScalarType t : {at::kFloat, at::kHalf, at::kBFloat16})
            for (const CatCase& k : {CatCase{2, 64, 32, 28, 8}, CatCase{3, 12, 20, 7, 4}, CatCase{2, 3, 5, 5, 2},
                                     CatCase{512, 64, 32, 28, 8}}) {
                const auto cl = at::MemoryFormat::ChannelsLast;
                const at::Tensor x1 = (at::randn({k.n, k.c1, k.hw, k.hw}, opt) * 2 + 1).to(t).contiguous(cl);
                const at::Tensor x2 = (at::randn({k.n, k.c2, k.hw, k.hw}, opt) - 0.5).to(t).contiguous(cl);
                const at::Tensor gamma = at::randn({k.c1 + k.c2}, opt).to(t), beta = at::randn({k.c1 + k.c2}, opt).to(t);
                const at::Tensor r = at::randn({k.n, k.c1, k.hw, k.hw}, opt).to(t).contiguous(cl);
                const at::Tensor b = at::randn({k.c1}, opt).to(t);
                if (!fused_concat_usable(x1, x2, k.groups) || !fused_residual_usable(x1)) {
                    std::printf("concatenation group norm [%lld, %lld + %lld, %lld, %lld] %s: not usable\n", (long long)k.n,
                                (long long)k.c1, (long long)k.c2, (long long)k.hw, (long long)k.hw, c10::toString(t));
                    ok = false;
                    continue;
                }
                auto d = [](const at::Tensor& v) { return v.to(at::kDouble); };
                const at::Tensor ref = at::silu(at::group_norm(at::cat({d(x1), d(x2)}, 1), k.groups, d(gamma), d(beta), 1e-5));
                const at::Tensor y = fused_concat_group_norm_act(x1, x2, k.groups, gamma, beta, 1e-5, true);
                const double e1 = ((d(y) - ref).norm() / ref.norm()).item<double>();
                const at::Tensor rref = d(x1) + d(r) + d(b).view({1, -1, 1, 1});
                const at::Tensor sum = fused_residual_add_(x1.clone(at::MemoryFormat::ChannelsLast), r, b);
                // And the plain layout.
                const at::Tensor sum_plain = fused_residual_add_(x1.contiguous(), r.contiguous(), b);
                // Two residuals, and the bias alone.
                const at::Tensor sum2 = fused_residual_add_(x1.clone(at::MemoryFormat::ChannelsLast), r, b, r);
                const at::Tensor biased = fused_residual_add_(x1.clone(at::MemoryFormat::ChannelsLast), {}, b);
                const at::Tensor rref2 = rref + d(r), bref = d(x1) + d(b).view({1, -1, 1, 1});
                const double e2 = std::max({((d(sum) - rref).norm() / rref.norm()).item<double>(),
                                            ((d(sum2) - rref2).norm() / rref2.norm()).item<double>(),
                                            ((d(biased) - bref).norm() / bref.norm()).item<double>()});
                const double e3 = ((d(sum_plain) - rref).norm() / rref.norm()).item<double>();
                // Upsampling: the same values as LibTorch's, bit for bit.
                const at::Tensor up = fused_upsample2(x1);
                const double e4 = (up - at::upsample_nearest2d(x1, {2 * k.hw, 2 * k.hw})).abs().max().item<double>();
                const double tol = t == at::kFloat ? 1e-5 : t == at::kHalf ? 2e-3 : 1.5e-2;
                const bool good = std::isfinite(e1 + e2 + e3) && std::max({e1, e2, e3}) < tol && e4 == 0 &&
                                  y.is_contiguous(at::MemoryFormat::ChannelsLast) && y.scalar_type() == t &&
                                  up.is_contiguous(at::MemoryFormat::ChannelsLast);
                ok = ok && good;
                std::printf("concatenation group norm + SiLU [%lld, %lld + %lld, %lld, %lld] / %lld groups, %s: relative "
                            "error %.2e; residual add %.2e (channels-last), %.2e (plain) against float64; upsampling max |diff| %g; %s",
                            (long long)k.n, (long long)k.c1, (long long)k.c2, (long long)k.hw, (long long)k.hw,
                            (long long)k.groups, c10::toString(t), e1, e2, e3, e4, good ? "ok" : "WRONG");
                if (t == at::kFloat && k.n >= 512) {
                    const at::Tensor g = gamma, be = beta;
                    const double fused_ms = time_ms([&] { (void)fused_concat_group_norm_act(x1, x2, k.groups, g, be, 1e-5, true); }, 100);
                    const double cat_ms = time_ms([&] { (void)fused_group_norm_act(at::cat({x1, x2}, 1), {}, k.groups, g, be, 1e-5, true); }, 100);
                    at::Tensor acc = x1.clone(at::MemoryFormat::ChannelsLast);
                    const double add_ms = time_ms([&] { (void)fused_residual_add_(acc, r, b); }, 100);
                    const double ops_ms = time_ms([&] { (void)acc.add_(b.view({1, -1, 1, 1})).add_(r); }, 100);
                    const double up_ms = time_ms([&] { (void)fused_upsample2(x1); }, 100);
                    const double up_ops_ms = time_ms([&] { (void)at::upsample_nearest2d(x1, {2 * k.hw, 2 * k.hw}); }, 100);
                    std::printf("; concatenation + norm %.4f ms against cat then the fused norm %.4f ms (%.2fx); residual add "
                                "%.4f ms against LibTorch's bias add + add %.4f ms (%.2fx); upsampling %.4f ms against %.4f (%.2fx)",
                                fused_ms, cat_ms, cat_ms / fused_ms, add_ms, ops_ms, ops_ms / add_ms, up_ms, up_ops_ms,
                                up_ops_ms / up_ms);
                }
                std::printf("\n");
            }
    }
    // The residual kernel's per-channel sums and the streaming GroupNorm that uses them
    // (fused_sums_known): the norm of a residual output, and of two concatenated, against float64
    // and against kernel 2 on the same input; an in-place change of the output must retire its sums.
    {
        struct SumCase {
            int64_t n, c1, c2, hw, groups;  // c2 > 0: the concatenation of two residual outputs
        };
        const auto cl = at::MemoryFormat::ChannelsLast;
        auto d = [](const at::Tensor& v) { return v.to(at::kDouble); };
        auto relative = [](const at::Tensor& a, const at::Tensor& ref) { return ((a.to(at::kDouble) - ref).norm() / ref.norm()).item<double>(); };
        for (const at::ScalarType t : {at::kFloat, at::kHalf, at::kBFloat16})
            for (const SumCase& k : {SumCase{2, 32, 0, 28, 8}, SumCase{512, 32, 0, 28, 8}, SumCase{512, 64, 0, 14, 8},
                                     SumCase{1, 64, 0, 7, 8}, SumCase{3, 128, 0, 7, 32}, SumCase{512, 64, 32, 28, 8},
                                     SumCase{2, 64, 64, 7, 8}}) {
                // A residual output: h + r + bias, with a mean far from 0 in some channels.
                auto residual = [&](int64_t c) {
                    const at::Tensor h = (at::randn({k.n, c, k.hw, k.hw}, opt) * 2 + at::randn({1, c, 1, 1}, opt) * 3).to(t).contiguous(cl);
                    const at::Tensor r = at::randn({k.n, c, k.hw, k.hw}, opt).to(t).contiguous(cl);
                    return fused_residual_add_(h, r, at::randn({c}, opt).to(t));
                };
                const at::Tensor s1 = residual(k.c1), s2 = k.c2 > 0 ? residual(k.c2) : at::Tensor();
                const int64_t C = k.c1 + k.c2;
                const at::Tensor gamma = at::randn({C}, opt).to(t), beta = at::randn({C}, opt).to(t);
                const bool known = fused_sums_known(s1) && (k.c2 == 0 || fused_sums_known(s2));
                const at::Tensor in = k.c2 > 0 ? at::cat({d(s1), d(s2)}, 1) : d(s1);
                const at::Tensor ref = at::silu(at::group_norm(in, k.groups, d(gamma), d(beta), 1e-5));
                auto norm = [&](const at::Tensor& a, const at::Tensor& b, int kernel = 0) {
                    return b.defined() ? fused_concat_group_norm_act(a, b, k.groups, gamma, beta, 1e-5, true, kernel)
                                       : fused_group_norm_act(a, {}, k.groups, gamma, beta, 1e-5, true, kernel);
                };
                const at::Tensor y = norm(s1, s2);
                const double e1 = relative(y, ref);
                // The same input through kernel 2, and fresh tensors (no sums known: the sums pass).
                const at::Tensor y2 = norm(s1, s2, 2);
                const double e2 = relative(y2, ref);
                const at::Tensor f1 = s1.clone(cl), f2 = k.c2 > 0 ? s2.clone(cl) : at::Tensor();
                const double e4 = relative(norm(f1, f2), ref);
                // An in-place change retires the sums; the norm then follows the new values.
                s1.mul_(2);
                const bool retired = !fused_sums_known(s1);
                const at::Tensor in3 = k.c2 > 0 ? at::cat({d(s1), d(s2)}, 1) : d(s1);
                const double e3 = relative(norm(s1, s2), at::silu(at::group_norm(in3, k.groups, d(gamma), d(beta), 1e-5)));
                const double tol = t == at::kFloat ? 1e-5 : t == at::kHalf ? 2e-3 : 1.5e-2;
                const bool good = known && retired && std::isfinite(e1 + e2 + e3 + e4) && std::max({e1, e2, e3, e4}) < tol &&
                                  y.is_contiguous(cl) && y.scalar_type() == t;
                ok = ok && good;
                std::printf("streaming group norm + SiLU of a residual output [%lld, %lld%s%s, %lld, %lld] / %lld groups, %s: "
                            "relative error %.2e (kernel 2: %.2e; a fresh copy, by the sums pass: %.2e; after an in-place "
                            "change %.2e) against float64%s%s %s",
                            (long long)k.n, (long long)k.c1, k.c2 > 0 ? " + " : "", k.c2 > 0 ? std::to_string(k.c2).c_str() : "",
                            (long long)k.hw, (long long)k.hw, (long long)k.groups, c10::toString(t), e1, e2, e4, e3,
                            known ? "" : "; the residual kernel left no sums", retired ? "" : "; the sums outlived a change",
                            good ? "ok" : "WRONG");
                if (t == at::kFloat && k.n >= 512) {
                    const at::Tensor a = s1.clone(cl), b = k.c2 > 0 ? s2.clone(cl) : at::Tensor();
                    const at::Tensor r = at::randn_like(a), bias = at::randn({k.c1}, opt);
                    at::Tensor acc = a.clone(cl), plain = a.contiguous(), plain_r = r.contiguous();
                    // Sums known for acc (and b) after these; the norm then streams.
                    const double add_ms = time_ms([&] { (void)fused_residual_add_(acc, r, bias); }, 100);
                    const double add_plain_ms = time_ms([&] { (void)fused_residual_add_(plain, plain_r, bias); }, 100);
                    at::Tensor b_known;
                    if (b.defined()) b_known = fused_residual_add_(b.clone(cl), {}, at::zeros({k.c2}, opt));
                    const double stream_ms = time_ms([&] { (void)norm(acc, b_known); }, 100);
                    const at::Tensor a2 = acc.clone(cl), b2 = b.defined() ? b.clone(cl) : at::Tensor();
                    const double smem_ms = time_ms([&] { (void)norm(a2, b2, 2); }, 100);
                    const double pass_ms = time_ms([&] { (void)norm(a2, b2); }, 100);
                    const double gbs = 2.0 * double(acc.numel() + (b.defined() ? b.numel() : 0)) * 4 / (stream_ms * 1e6);
                    std::printf("; streaming norm %.4f ms (%.0f GB/s), sums pass + streaming norm %.4f ms, kernel 2 %.4f ms "
                                "(%.2fx the streaming norm, %.2fx the two passes); residual add with sums "
                                "%.4f ms against without (plain layout) %.4f ms",
                                stream_ms, gbs, pass_ms, smem_ms, smem_ms / stream_ms, smem_ms / pass_ms, add_ms, add_plain_ms);
                }
                std::printf("\n");
            }
    }
    // The decoder's upsampling convolution as four phases of a 2x2 convolution (fused_upsample_conv):
    // against upsampling + 3x3 convolution + bias in float64, its sums known and right (the streaming
    // norm of its output against float64), timed against the path it replaces (upsampling kernel,
    // cuDNN's 3x3 convolution, bias pass with sums).
    {
        const auto cl = at::MemoryFormat::ChannelsLast;
        for (const at::ScalarType t : {at::kFloat, at::kHalf, at::kBFloat16})
            for (const auto& k : {std::array<int64_t, 4>{512, 64, 14, 64}, std::array<int64_t, 4>{512, 64, 7, 64},
                                  std::array<int64_t, 4>{2, 32, 5, 16}}) {
                const int64_t N = k[0], Cin = k[1], H = k[2], C = k[3];
                const at::Tensor x = at::randn({N, Cin, H, H}, opt).to(t).contiguous(cl);
                const at::Tensor w = (at::randn({C, Cin, 3, 3}, opt) * (1.0 / std::sqrt(9.0 * double(Cin)))).to(t).contiguous(cl);
                const at::Tensor b = at::randn({C}, opt).to(t);
                if (!fused_upsample_conv_usable(x, w, b)) {
                    std::printf("upsampling convolution [%lld, %lld, %lld, %lld] -> %lld, %s: not usable WRONG\n", (long long)N,
                                (long long)Cin, (long long)H, (long long)H, (long long)C, c10::toString(t));
                    ok = false;
                    continue;
                }
                const at::Tensor w4 = subpixel_weight(w);
                const at::Tensor y = fused_upsample_conv(x, w4, b);
                const at::Tensor xd = x.to(at::kDouble);
                const at::Tensor ref = at::conv2d(at::upsample_nearest2d(xd, {2 * H, 2 * H}), w.to(at::kDouble), b.to(at::kDouble), 1, 1);
                const double e = ((y.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
                const at::Tensor gamma = at::randn({C}, opt).to(t), beta = at::randn({C}, opt).to(t);
                const bool known = fused_sums_known(y);
                const at::Tensor gn = fused_group_norm_act(y, {}, 8, gamma, beta, 1e-5, true);
                const at::Tensor gref = at::silu(at::group_norm(y.to(at::kDouble), 8, gamma.to(at::kDouble), beta.to(at::kDouble), 1e-5));
                const double eg = ((gn.to(at::kDouble) - gref).norm() / gref.norm()).item<double>();
                // TF32 (float32) or the type's rounding of inputs, weights summed per phase, and output.
                const double tol = t == at::kFloat ? 2e-3 : t == at::kHalf ? 3e-3 : 2e-2;
                const double gtol = t == at::kFloat ? 1e-5 : t == at::kHalf ? 2e-3 : 1.5e-2;
                const bool good = std::isfinite(e + eg) && e < tol && eg < gtol && known && y.is_contiguous(cl) &&
                                  y.sizes() == ref.sizes() && y.scalar_type() == t;
                ok = ok && good;
                std::printf("upsampling convolution [%lld, %lld, %lld, %lld] -> %lld, %s: relative error %.2e against float64; "
                            "its norm from the sums it left %.2e%s %s",
                            (long long)N, (long long)Cin, (long long)H, (long long)H, (long long)C, c10::toString(t), e, eg,
                            known ? "" : "; no sums left", good ? "ok" : "WRONG");
                if (N >= 512) {
                    const double fused_ms = time_ms([&] { (void)fused_upsample_conv(x, w4, b); }, 100);
                    const double old_ms = time_ms(
                        [&] { (void)fused_residual_add_(at::conv2d(fused_upsample2(x), w, {}, 1, 1), {}, b); }, 100);
                    std::printf("; %.4f ms against upsampling + 3x3 convolution + bias %.4f ms (%.2fx)", fused_ms, old_ms,
                                old_ms / fused_ms);
                }
                std::printf("\n");
            }
    }
    // The training residual add (fused_residual_add_train, channels-last float32): its output and the
    // gradients of h, r, r2 and the bias for a random upstream gradient against float64 autograd.
    {
        torch::AutoGradMode grad_on(true);
        const auto cl = at::MemoryFormat::ChannelsLast;
        for (const auto& shape : {std::vector<int64_t>{2, 32, 28, 28}, std::vector<int64_t>{128, 64, 14, 14}}) {
            auto leaf = [&](double scale) { return (at::randn(shape, opt) * scale).contiguous(cl).requires_grad_(true); };
            const at::Tensor h = leaf(1.0), r = leaf(2.0), r2 = leaf(0.5);
            const at::Tensor b = at::randn({shape[1]}, opt).requires_grad_(true);
            const at::Tensor w = at::randn(shape, opt);
            if (!fused_residual_train_fits(h, r, b, r2)) {
                std::printf("training residual add: not usable\n");
                ok = false;
                continue;
            }
            const at::Tensor y = fused_residual_add_train(h, r, b, r2);
            (y * w).sum().backward();
            auto d = [](const at::Tensor& v) { return v.detach().to(at::kDouble).requires_grad_(true); };
            const at::Tensor hd = d(h), rd = d(r), r2d = d(r2), bd = d(b);
            const at::Tensor yd = hd + rd + r2d + bd.view({1, -1, 1, 1});
            (yd * w.to(at::kDouble)).sum().backward();
            auto rel = [](const at::Tensor& a, const at::Tensor& ref) { return ((a.to(at::kDouble) - ref).norm() / ref.norm()).item<double>(); };
            const double worst = std::max({rel(y.detach(), yd.detach()), rel(h.grad(), hd.grad()), rel(r.grad(), rd.grad()),
                                           rel(r2.grad(), r2d.grad()), rel(b.grad(), bd.grad())});
            const bool good = std::isfinite(worst) && worst < 1e-5 && y.is_contiguous(cl);
            ok = ok && good;
            std::printf("training residual add [%lld, %lld, %lld, %lld] channels-last: largest relative error (output, "
                        "four gradients) %.1e against float64 %s\n",
                        (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)shape[3], worst,
                        good ? "ok" : "WRONG");
        }
    }
    // The column sums of the training backward passes (bias, gamma and beta gradients): against
    // float64, the same bits twice, and timed against LibTorch's sum over N, H and W.
    for (const auto& shape : {std::vector<int64_t>{2, 64}, std::vector<int64_t>{128, 3}, std::vector<int64_t>{2, 32, 28, 28},
                              std::vector<int64_t>{128, 32, 28, 28}, std::vector<int64_t>{128, 192, 7, 7},
                              std::vector<int64_t>{128, 96, 14, 14}, std::vector<int64_t>{64, 1, 28, 28},
                              std::vector<int64_t>{256, 32, 64, 64}}) {
        at::Tensor x = at::randn(shape, opt) + 0.5;
        if (x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
        std::vector<int64_t> dims{0};
        if (x.dim() == 4) dims = {0, 2, 3};
        const at::Tensor s = fused_channel_sums(x), again = fused_channel_sums(x);
        const at::Tensor ref = x.to(at::kDouble).sum(dims);
        const double rel = ((s.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
        const bool same = at::equal(s, again);
        const bool good = std::isfinite(rel) && rel < 1e-6 && same;
        ok = ok && good;
        std::string dims_text;
        for (int64_t v : shape) dims_text += (dims_text.empty() ? "" : ", ") + std::to_string(v);
        std::printf("channel sums [%s]: relative error %.1e against float64, %s twice", dims_text.c_str(), rel,
                    same ? "the same bits" : "DIFFERENT bits");
        if (x.numel() >= (1 << 20)) {
            const double ours = time_ms([&] { (void)fused_channel_sums(x); }, 100);
            const double theirs = time_ms([&] { (void)x.sum(dims); }, 100);
            std::printf("; %.4f ms against LibTorch's sum %.4f ms (%.2fx)", ours, theirs, theirs / ours);
        }
        std::printf(" %s\n", good ? "ok" : "WRONG");
    }
    if (fused_attention_usable(at::zeros({1}, opt))) {
        for (const auto& shape : {std::vector<int64_t>{2, 4, 49, 16}, std::vector<int64_t>{512, 4, 196, 32}}) {
            const at::Tensor q = at::randn(shape, opt), k = at::randn(shape, opt), v = at::randn(shape, opt);
            const at::Tensor out = fused_attention(q, k, v);
            const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
            const at::Tensor ref = at::matmul(at::softmax(at::matmul(qd, kd.transpose(2, 3)) / std::sqrt(double(shape[3])), -1), vd);
            const double rel = ((out.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
            const bool good = std::isfinite(rel) && rel < 1e-3;  // TF32-class accuracy at most
            ok = ok && good;
            std::printf("attention [%lld, %lld, %lld, %lld]: relative error %.2e against float64 %s\n", (long long)shape[0],
                        (long long)shape[1], (long long)shape[2], (long long)shape[3], rel, good ? "ok" : "WRONG");
        }
    }
    // The first convolution of a one-channel image (with its bias, written channels-last) against
    // float64, timed against cuDNN's convolution + the conversion to channels-last + the bias pass.
    for (const auto& [n, c, h, w, t] : {std::tuple<int64_t, int64_t, int64_t, int64_t, at::ScalarType>{3, 32, 28, 28, at::kFloat},
                                        {2, 8, 5, 7, at::kFloat}, {1, 3, 1, 1, at::kFloat}, {512, 32, 28, 28, at::kFloat},
                                        {4, 32, 28, 28, at::kHalf}, {4, 32, 28, 28, at::kBFloat16}}) {
        const at::Tensor x = at::randn({n, 1, h, w}, opt).to(t), wt = at::randn({c, 1, 3, 3}, opt).to(t),
                         b = at::randn({c}, opt).to(t);
        if (!fused_first_conv_usable(x, wt, b)) continue;
        const at::Tensor out = fused_first_conv(x, wt, b);
        const at::Tensor ref = at::conv2d(x.to(at::kDouble), wt.to(at::kDouble), b.to(at::kDouble), 1, 1);
        const double rel = ((out.to(at::kDouble) - ref).norm() / ref.norm()).item<double>();
        // With 8k channels the kernel leaves the output's sums (the GroupNorm that reads it streams):
        // that norm against float64.
        const bool known = fused_sums_known(out);
        double gerr = 0;
        if (known) {
            const int64_t groups = c / 4;
            const at::Tensor g = at::randn({c}, opt).to(t), be = at::randn({c}, opt).to(t);
            const at::Tensor gref = at::silu(at::group_norm(out.to(at::kDouble), groups, g.to(at::kDouble), be.to(at::kDouble), 1e-5));
            gerr = ((fused_group_norm_act(out, {}, groups, g, be, 1e-5, true).to(at::kDouble) - gref).norm() / gref.norm()).item<double>();
        }
        const bool good = std::isfinite(rel + gerr) && rel < (t == at::kFloat ? 1e-6 : 1e-2) &&
                          gerr < (t == at::kFloat ? 1e-5 : t == at::kHalf ? 2e-3 : 1.5e-2) &&
                          (known || c % 8 != 0) && out.is_contiguous(at::MemoryFormat::ChannelsLast);
        ok = ok && good;
        std::printf("first convolution [%lld, 1, %lld, %lld] -> %lld channels, %s: relative error %.1e against float64", (long long)n,
                    (long long)h, (long long)w, (long long)c, c10::toString(t), rel);
        if (known) std::printf(", its norm from the sums it left %.2e", gerr);
        else std::printf(", no sums left");
        if (n >= 256) {
            const double ours = time_ms([&] { (void)fused_first_conv(x, wt, b); }, 200);
            const double theirs = time_ms(
                [&] { (void)(at::conv2d(x, wt, {}, 1, 1).contiguous(at::MemoryFormat::ChannelsLast) + b.view({1, -1, 1, 1})); }, 200);
            std::printf("; %.4f ms against cuDNN + layout + bias %.4f ms (%.2fx)", ours, theirs, theirs / ours);
        }
        std::printf(" %s\n", good ? "ok" : "WRONG");
    }
    // The attention kernel for short sequences, from a channels-last qkv as the attention block's
    // 1x1 convolution leaves it, against float64; timed against the path it replaces (LibTorch's
    // fused attention on strided views, then a copy back to channels-last).
    struct AttnCase {
        int64_t b, heads, d, h, w;
        at::ScalarType t;
    };
    for (const AttnCase& a : {AttnCase{3, 4, 16, 7, 7, at::kFloat}, AttnCase{2, 2, 8, 4, 5, at::kFloat},
                              AttnCase{2, 2, 32, 8, 8, at::kFloat}, AttnCase{2, 1, 64, 6, 6, at::kFloat},
                              AttnCase{1, 3, 16, 1, 1, at::kFloat}, AttnCase{512, 4, 16, 7, 7, at::kFloat},
                              AttnCase{4, 4, 16, 7, 7, at::kHalf}, AttnCase{4, 4, 16, 7, 7, at::kBFloat16},
                              AttnCase{512, 4, 16, 7, 7, at::kHalf}}) {
        const int64_t C = a.heads * a.d, L = a.h * a.w;
        const at::Tensor qkv = (at::randn({a.b, 3 * C, a.h, a.w}, opt) * 2)
                                   .to(a.t)
                                   .contiguous(at::MemoryFormat::ChannelsLast);
        if (!fused_small_attention_usable(qkv, a.heads)) continue;  // a CPU run, or a build without the kernels
        const at::Tensor out = fused_small_attention(qkv, a.heads);
        auto heads_of = [&](const at::Tensor& t) {  // [B, L, 3, heads, D] -> q, k, v [B, heads, L, D]
            return t.permute({0, 2, 3, 1}).reshape({a.b, L, 3, a.heads, a.d}).permute({2, 0, 3, 1, 4}).unbind(0);
        };
        const auto p = heads_of(qkv.to(at::kDouble));
        const at::Tensor ref = at::matmul(at::softmax(at::matmul(p[0], p[1].transpose(2, 3)) / std::sqrt(double(a.d)), -1), p[2])
                                   .transpose(1, 2)
                                   .reshape({a.b, L, C});
        const at::Tensor got = out.permute({0, 2, 3, 1}).reshape({a.b, L, C}).to(at::kDouble);
        const double rel = ((got - ref).norm() / ref.norm()).item<double>();
        const bool layout_kept = out.is_contiguous(at::MemoryFormat::ChannelsLast) && out.size(1) == C;
        const bool good = std::isfinite(rel) && rel < (a.t == at::kFloat ? 1e-6 : 1e-2) && layout_kept;
        ok = ok && good;
        std::printf("short-sequence attention b %lld, %lld heads of %lld, %lldx%lld, %s: relative error %.1e against float64",
                    (long long)a.b, (long long)a.heads, (long long)a.d, (long long)a.h, (long long)a.w, c10::toString(a.t), rel);
        if (a.b >= 256) {
            const double ours = time_ms([&] { (void)fused_small_attention(qkv, a.heads); }, 200);
            const double theirs = time_ms(
                [&] {
                    const auto v = qkv.permute({0, 2, 3, 1}).view({a.b, L, 3, a.heads, a.d}).permute({2, 0, 3, 1, 4}).unbind(0);
                    (void)fused_attention(v[0], v[1], v[2]).transpose(1, 2).reshape({a.b, a.h, a.w, C});
                },
                200);
            std::printf("; %.4f ms against LibTorch's attention + copy %.4f ms (%.2fx)", ours, theirs, theirs / ours);
        }
        std::printf(" %s\n", good ? "ok" : "WRONG");
    }
    // A graphed UNet after an in-place change of its weights (as an optimizer or EMA step or a load
    // makes): GraphedModel recaptures (the graph holds tensors made from the weights), so its replay
    // equals the eager pass with the new weights.
    if (dev.is_cuda() && cuda_graphs_compiled()) {
        NetworkConfig nc;
        nc.dropout = 0;
        Network net = make_network(nc).value();
        net->to(dev);
        net->eval();
        if (channels_last_enabled()) net->to_channels_last();
        for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
        GraphedModel graphed(net);
        const at::Tensor x = at::randn({8, 1, 28, 28}, opt), t = at::full({8}, 300, opt.dtype(at::kLong)),
                         y = at::arange(8, opt.dtype(at::kLong));
        const at::Tensor first = graphed(x, t, y);
        for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
        const at::Tensor replay = graphed(x, t, y), eager = net->forward(x, t, y);
        const double rel = ((replay - eager).norm() / eager.norm()).item<double>();
        const double moved = ((replay - first).norm() / first.norm()).item<double>();
        const bool good = graphed.active() && std::isfinite(rel) && rel < 1e-3 && moved > 1e-2;
        ok = ok && good;
        std::printf("graphed UNet after a weight change: relative difference to eager %.1e, to the old weights' output %.1e%s %s\n",
                    rel, moved, graphed.active() ? "" : " (graphs not active)", good ? "ok" : "WRONG");
    }
    return ok ? 0 : failure("bench --check-fused: a fused kernel disagrees with the reference");
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
    Args args("bench");
    args.option("model", "a model name/file, or 'config' for the default architecture untrained", "config")
        .option("device", "cpu, cuda or auto", "auto")
        .option("precision", precision_help(), "fp32")
        .option("batches", "batch sizes to time", "1,64")
        .option("iters", "timed denoising steps per batch size", "30")
        .option("base-channels", "with --model config: UNet base channels", "32")
        .option("mult", "with --model config: channel multipliers", "1,2,2")
        .flag("chain", "also time a whole guided DDIM chain (1 and 256 samples) eagerly and as CUDA graphs")
        .flag("bf16", "also time the forward pass under bf16 autocast (CUDA), eager and graphed")
        .flag("check-fused", "check the fused CUDA kernels against a float64 reference and time them, then quit")
        .flag("no-mkldnn", "use LibTorch's native convolutions instead of oneDNN (CPU)")
        .option("threads", "intra-op threads (0: one per core)", "0")
        .flag("help", "show this help");
    if (int rc = parse_or_help(args, argv, "bench [OPTIONS]"); rc >= 0) return rc;
    auto device = select_device(args.get("device"));
    if (!device) return failure("bench: " + device.error());
    if (int rc = apply_precision(args, device.value(), "bench"); rc >= 0) return rc;
    const bool bf16 = args.has("bf16");
    if (args.has("check-fused")) return check_fused(device.value());
    if (bf16 && !device->is_cuda()) return usage("bench: --bf16 needs a CUDA device");
    auto batches = args.get_int_list("batches", 1, 4096);
    if (!batches) return usage(batches.error());
    auto iters = args.get_int("iters", 1, 100000);
    if (!iters) return usage(iters.error());
    Network net;
    NetworkConfig nc;
    std::optional<LoadedModel> loaded;  // a model file: kept for --chain
    if (args.get("model") == "config") {
        auto base = args.get_int("base-channels", 8, 1024);
        auto mult = args.get_int_list("mult", 1, 16);
        if (!base) return usage(base.error());
        if (!mult) return usage(mult.error());
        nc.base_channels = base.value();
        nc.channel_mult = mult.value();
        auto made = make_network(nc);
        if (!made) return usage("bench: " + made.error());
        net = made.value();
        net->to(device.value());
        net->eval();
        if (device->is_cuda() && half_inference_dtype() != at::kFloat) net->to_half(half_inference_dtype());
    } else {
        auto path = resolve_model(args.get("model"));
        if (!path) return failure("bench: " + path.error());
        auto m = load_model(path.value(), device.value());
        if (!m) return failure("bench: " + m.error());
        net = m->network;
        nc = m->config.network;
        loaded = std::move(m.value());
    }
    torch::NoGradGuard ng;
    if (args.has("no-mkldnn")) at::globalContext().setUserEnabledMkldnn(false);
    auto threads = args.get_int("threads", 0, 1024);
    if (!threads) return usage(threads.error());
    configure_threads(static_cast<int>(threads.value()));
    // Loaded on CUDA, a UNet runs channels-last unless DLAB_CHANNELS_LAST=0 (network.h).
    bool channels_last = false;
    for (const auto& p : net->parameters()) channels_last = channels_last || (p.dim() == 4 && !p.is_contiguous());
    const at::ScalarType weights = net->parameters().empty() ? at::kFloat : net->parameters().front().scalar_type();
    std::printf("bench: %s, %lld parameters (%s), device %s, %d threads, LibTorch %s, layout %s%s\n",
                to_string(nc.kind).c_str(), (long long)net->parameter_count(), c10::toString(weights), device->str().c_str(),
                at::get_num_threads(), runtime_info().torch_version.c_str(), channels_last ? "channels-last" : "plain",
                device->is_cuda() ? (at::globalContext().benchmarkCuDNN() ? ", cuDNN benchmark on" : ", cuDNN benchmark off")
                                  : "");
    // The same forward pass eagerly and replayed as a CUDA graph (graphed_model.h), alternated in
    // this one process on the same inputs; "-" where graphs are not in use (CPU, or DLAB_CUDA_GRAPHS=0).
    GraphedModel graphed(net);
    // Its own graphs: those captured under autocast hold bf16 kernels.
    const auto graphed16 = std::make_shared<GraphedModel>(net);
    const ModelFn eager16 = model_function(net, nullptr, true);
    const ModelFn graph16 = model_function(net, graphed16, true);
    std::printf("%8s %14s %14s %9s %18s %18s\n", "batch", "eager ms/step", "graph ms/step", "ratio", "img-steps/s eager",
                "img-steps/s graph");
    for (int64_t b : batches.value()) {
        // A guided step is one forward pass over 2b inputs (conditional + unconditional halves).
        const int64_t fb = 2 * b;
        std::vector<int64_t> shape = nc.kind == NetworkKind::UNet
                                         ? std::vector<int64_t>{fb, nc.in_channels, nc.image_size, nc.image_size}
                                         : std::vector<int64_t>{fb, nc.in_channels};
        const at::Tensor x = at::randn(shape).to(device.value());
        const at::Tensor t = at::full({fb}, 500, at::kLong).to(device.value());
        const at::Tensor y = nc.num_classes > 0 ? at::zeros({fb}, at::kLong).to(device.value()) : at::Tensor();
        auto sync = [&] {
            if (device->is_cuda()) torch::cuda::synchronize();
        };
        auto median_ms = [&](const std::function<at::Tensor()>& f) {
            for (int i = 0; i < 3; ++i) f();
            sync();
            std::vector<double> ms;
            for (int64_t i = 0; i < iters.value(); ++i) {
                const auto a = std::chrono::steady_clock::now();
                f();
                sync();
                ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
            }
            std::sort(ms.begin(), ms.end());
            return ms[ms.size() / 2];
        };
        const double eager = median_ms([&] { return net->forward(x, t, y); });
        if (graphed.active()) {
            const double graph = median_ms([&] { return graphed(x, t, y); });
            const double diff = (graphed(x, t, y) - net->forward(x, t, y)).abs().max().item<double>();
            std::printf("%8lld %14.3f %14.3f %9.2f %18.1f %18.1f   max |graph - eager| %.2e\n", (long long)b, eager, graph,
                        eager / graph, 1000.0 * b / eager, 1000.0 * b / graph, diff);
        } else {
            std::printf("%8lld %14.3f %14s %9s %18.1f %18s\n", (long long)b, eager, "-", "-", 1000.0 * b / eager, "-");
        }
        // DLAB_PROFILE_STEPS=N: the kernels of N graph replays on CUDA, the operators of N eager passes
        // elsewhere (kernel_profile.h; the same table a training run prints, comparable with the peer's
        // torch.profiler table).
        if (const int64_t n = profile_steps_asked(); n > 0) {
            KernelProfile prof;
            const bool g = graphed.active();
            if (const std::string why = prof.start(device->is_cuda()); !why.empty()) {
                std::printf("profile: %s\n", why.c_str());
            } else {
                const auto a = std::chrono::steady_clock::now();
                for (int64_t i = 0; i < n; ++i) g ? graphed(x, t, y) : net->forward(x, t, y);
                sync();
                const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
                std::printf("profile of the %s guided pass, batch %lld:\n%s", g ? "graphed" : "eager", (long long)b,
                            prof.stop(n, ms).c_str());
            }
        }
        if (bf16) {
            const double e16 = median_ms([&] { return eager16(x, t, y); });
            const double g16 = graphed16->active() ? median_ms([&] { return graph16(x, t, y); }) : 0.0;
            const double diff = (eager16(x, t, y) - net->forward(x, t, y)).abs().max().item<double>();
            std::printf("%8s %14.3f %14.3f %9s %18.1f %18.1f   bf16 autocast; max |bf16 - fp32| %.2e\n", "bf16", e16, g16,
                        "", 1000.0 * b / e16, g16 > 0 ? 1000.0 * b / g16 : 0.0, diff);
        }
        std::fflush(stdout);
    }
    // A whole guided DDIM chain through generate(), eager and graphed, same seed: time and agreement.
    if (args.has("chain") && nc.kind == NetworkKind::UNet && loaded) {
        for (int64_t n : {int64_t(1), int64_t(256)}) {
            GenerateRequest req;
            req.sampler.kind = SamplerKind::Ddim;
            req.sampler.steps = 50;
            req.count = n;
            req.batch = n;
            req.guidance = 3.0;
            req.seed = 7;
            if (nc.num_classes > 0) req.labels = at::arange(n, at::kLong).remainder(nc.num_classes);
            at::Tensor out[2];
            double secs[2];
            // The graphed calls share one set of graphs: the warm-up call captures them, the timed call
            // replays them (as the GUI's jobs do), so the timed call holds no capture.
            const auto shared = std::make_shared<GraphedModel>(net);
            for (int g = 0; g < 2; ++g) {
                req.cuda_graphs = g == 1;
                req.graphs = g == 1 ? shared : nullptr;
                generate(*loaded, req);  // warm-up (and the capture)
                if (device->is_cuda()) torch::cuda::synchronize();
                const auto a = std::chrono::steady_clock::now();
                auto r = generate(*loaded, req);
                if (device->is_cuda()) torch::cuda::synchronize();
                secs[g] = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
                if (!r) return failure("bench: " + r.error());
                out[g] = r.value();
            }
            std::printf("chain: %lld sample%s, DDIM 50, CFG s = 3: eager %.1f ms (%.2f ms/step), graphed %.1f ms (%.2f ms/step), "
                        "ratio %.2f; max |graphed - eager| %.2e\n",
                        (long long)n, n == 1 ? "" : "s", 1000 * secs[0], 20 * secs[0], 1000 * secs[1], 20 * secs[1],
                        secs[0] / secs[1], (out[1] - out[0]).abs().max().item<double>());
            // Steps 2-49 of one chain: what a long chain costs a step, without the call's setup, the
            // first step (where a request without shared graphs captures its own) and the end.
            for (int g = 0; g < 2; ++g) {
                req.cuda_graphs = g == 1;
                req.graphs = nullptr;  // a set of its own: captured on step 1, outside the timing
                auto run = GenerateRun::create(*loaded, req);
                if (!run) return failure("bench: " + run.error());
                GenerateRun& r = *run.value();
                r.step();
                if (device->is_cuda()) torch::cuda::synchronize();
                const auto a = std::chrono::steady_clock::now();
                int64_t steps = 0;
                while (r.steps_done() + 1 < r.total_steps()) {
                    r.step();
                    ++steps;
                }
                if (device->is_cuda()) torch::cuda::synchronize();
                secs[g] = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count() / double(steps);
            }
            std::printf("chain: %lld sample%s, steps 2-49 of the same chain: eager %.3f ms/step, graphed %.3f ms/step\n",
                        (long long)n, n == 1 ? "" : "s", 1000 * secs[0], 1000 * secs[1]);
        }
    }
    return 0;
}

}  // namespace dlab::app
