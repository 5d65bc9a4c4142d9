#include "core/evaluation/likelihood.h"

#include <chrono>
#include <cmath>
#include <memory>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/guidance/guidance.h"
#include "core/runtime/runtime.h"
#include "core/training/losses.h"

namespace dlab {

std::string to_string(BoundVariance v) {
    switch (v) {
        case BoundVariance::Model: return "model";
        case BoundVariance::Small: return "small";
        case BoundVariance::Large: return "large";
    }
    return "model";
}

std::optional<BoundVariance> parse_bound_variance(std::string_view name) {
    for (BoundVariance v : {BoundVariance::Model, BoundVariance::Small, BoundVariance::Large})
        if (name == to_string(v)) return v;
    return std::nullopt;
}

Result<BoundGrid> make_bound_grid(int64_t T, int64_t strata, at::Generator& gen) {
    if (T < 2) return Error{"bits/dim: the schedule needs at least 2 timesteps"};
    if (strata < 0) return Error{"bits/dim: the number of timestep strata must be 0 (all) or positive"};
    BoundGrid g;
    g.timesteps.push_back(0);
    g.weights.push_back(1.0);
    if (strata == 0 || strata >= T - 1) {
        for (int64_t t = 1; t < T; ++t) {
            g.timesteps.push_back(t);
            g.weights.push_back(1.0);
        }
        g.exact = true;
        return g;
    }
    // Strata [lo, hi) of 1..T-1 with sizes differing by at most one; one uniform draw in each.
    const int64_t n = T - 1;
    for (int64_t k = 0; k < strata; ++k) {
        const int64_t lo = 1 + k * n / strata, hi = 1 + (k + 1) * n / strata;
        const int64_t t = lo + at::randint(hi - lo, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
        g.timesteps.push_back(t);
        g.weights.push_back(double(hi - lo));
    }
    return g;
}

at::Tensor BoundTerms::total(const BoundGrid& grid) const {
    const at::Tensor w = at::tensor(grid.weights, at::TensorOptions().dtype(at::kDouble));
    return prior + (terms * w).sum(1);
}

namespace {

// Mean over every dimension but the first, as float64 on the CPU.
at::Tensor per_image(const at::Tensor& v) { return v.flatten(1).mean(1).to(at::kCPU, at::kDouble); }

}  // namespace

BoundTerms bound_terms(const Denoiser& denoise, const NoiseSchedule& schedule, const at::Tensor& x0,
                       const BoundGrid& grid, BoundVariance variance, bool clip_x0, at::Generator& gen) {
    c10::NoGradGuard no_grad;
    const double ln2 = std::log(2.0);
    const int64_t T = schedule.timesteps();
    const at::Tensor ab = schedule.alpha_bars().contiguous(), beta = schedule.betas().contiguous();
    const at::Tensor plv = schedule.posterior_log_variance_clipped().contiguous();
    const at::Tensor cx0 = schedule.posterior_mean_coef_x0().contiguous(), cxt = schedule.posterior_mean_coef_xt().contiguous();
    auto at_t = [](const at::Tensor& table, int64_t t) { return table.data_ptr<double>()[t]; };
    auto scalar = [&](double v) { return at::full({}, v, x0.options()); };
    // Index 0 has beta~_0 = 0: a fixed-variance decoder uses beta~_1 there (never a zero width);
    // the schedule's clipped table holds it.
    const double log_pv1 = at_t(plv, 0);

    std::vector<at::Tensor> terms, mses;
    for (int64_t t : grid.timesteps) {
        const at::Tensor eps = at::randn(x0.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(x0.options());
        const double a = at_t(ab, t);
        const at::Tensor xt = std::sqrt(a) * x0 + std::sqrt(1.0 - a) * eps;
        const X0Eps p = denoise(xt, t);
        mses.push_back(per_image((p.eps - eps).pow(2)));
        const at::Tensor x0_hat = clip_x0 ? p.x0.clamp(-1.0, 1.0) : p.x0;
        const at::Tensor mean_p = at_t(cx0, t) * x0_hat + at_t(cxt, t) * xt;
        at::Tensor lv_p;
        if (variance == BoundVariance::Model && p.var_v.defined()) {
            // The trainer's hybrid-loss table, so the bound is the one that was optimised.
            lv_p = learned_log_variance(p.var_v.clamp(-1.0, 1.0), scalar(std::log(at_t(beta, t))), scalar(at_t(plv, t)));
        } else if (t == 0) {
            lv_p = scalar(log_pv1);
        } else {
            lv_p = scalar(variance == BoundVariance::Large ? std::log(at_t(beta, t)) : at_t(plv, t));
        }
        if (t == 0) {
            terms.push_back(per_image(-discretized_gaussian_log_likelihood(x0, mean_p, 0.5 * lv_p)) / ln2);
        } else {
            const at::Tensor mean_q = at_t(cx0, t) * x0 + at_t(cxt, t) * xt;
            terms.push_back(per_image(normal_kl(mean_q, scalar(at_t(plv, t)), mean_p, lv_p)) / ln2);
        }
    }
    BoundTerms out;
    out.terms = at::stack(terms, 1);
    out.mse = at::stack(mses, 1);
    // L_T = KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1)).
    const double aT = at_t(ab, T - 1);
    out.prior = per_image(normal_kl(std::sqrt(aT) * x0, scalar(std::log(1.0 - aT)), scalar(0.0), scalar(0.0))) / ln2;
    return out;
}

Result<BoundReport> model_bound(const LoadedModel& model, const at::Tensor& images, const at::Tensor& labels,
                                const BoundOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    const ModelConfig& mc = model.config;
    const NetworkConfig& nc = mc.network;
    const std::string name = model.path.empty() ? std::string("the model") : model.path;
    if (model.autoencoder || !mc.autoencoder.empty())
        return Error{"bits/dim: " + name + " is a latent model; its bound would be in the autoencoder's latent space, "
                     "not in pixels (use a pixel-space model)"};
    if (nc.kind != NetworkKind::UNet) return Error{"bits/dim: " + name + " is not an image model"};
    if (!images.defined() || images.dim() != 4 || images.size(1) != nc.in_channels || images.size(2) != nc.image_size ||
        images.size(3) != nc.image_size)
        return Error{"bits/dim: the images must be [N, " + std::to_string(nc.in_channels) + ", " + std::to_string(nc.image_size) +
                     ", " + std::to_string(nc.image_size) + "] for " + name};
    const int64_t N = images.size(0);
    if (N < 2) return Error{"bits/dim: needs at least 2 images (for the standard error)"};
    if (o.batch < 1) return Error{"bits/dim: the batch must be positive"};
    if (!std::isfinite(o.guidance)) return Error{"bits/dim: the guidance scale must be finite"};
    const int64_t C = nc.num_classes;
    const bool conditional = C > 0 && !o.unconditional;
    if (conditional) {
        if (!labels.defined() || labels.dim() != 1 || labels.size(0) != N)
            return Error{"bits/dim: a class-conditional model needs one label per image (or the unconditional option)"};
        if ((labels < 0).any().item<bool>() || (labels >= C).any().item<bool>())
            return Error{"bits/dim: labels must be in 0.." + std::to_string(C - 1)};
    }
    auto schedule = NoiseSchedule::create(mc.schedule);
    if (!schedule) return Error{"bits/dim: " + schedule.error()};
    const bool guided = conditional && o.guidance != 1.0;
    const c10::Device device = model.network->parameters().front().device();
    const int64_t batch = std::min(o.batch, N);
    if (auto st = check_memory_budget("bits/dim: a batch", batch, nc.min_activation_bytes() * (guided ? 2 : 1), device); !st)
        return Error{st.error()};
    at::Generator grid_gen = make_generator(o.seed);
    auto grid = make_bound_grid(schedule->timesteps(), o.strata, grid_gen);
    if (!grid) return Error{grid.error()};

    BoundReport r;
    r.count = N;
    r.grid = grid.value();
    const bool learned = nc.learn_sigma && o.variance == BoundVariance::Model;
    r.variance = learned ? "learned" : o.variance == BoundVariance::Large ? "large" : "small";
    char cond[64];
    std::snprintf(cond, sizeof cond, "guided s = %g", o.guidance);
    r.conditioning = C == 0 ? "unconditional model" : !conditional ? "unconditional (null class)" : guided ? cond : "conditional";
    Network net = model.network;
    ModelFn fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) { return net->forward(x, t, y); };
    auto control = std::make_shared<GuidanceControl>(o.guidance);
    const size_t K = r.grid.timesteps.size();
    at::Tensor term_sum = at::zeros({int64_t(K)}, at::kDouble), mse_sum = at::zeros({int64_t(K)}, at::kDouble);
    std::vector<at::Tensor> totals, priors;
    const BoundVariance fixed = learned ? BoundVariance::Model : o.variance == BoundVariance::Large ? BoundVariance::Large
                                                                                                    : BoundVariance::Small;
    try {
        for (int64_t start = 0; start < N; start += batch) {
            if (o.cancel && o.cancel->load(std::memory_order_relaxed)) return Error{"cancelled"};
            const int64_t n = std::min(batch, N - start);
            const at::Tensor x0 = images.narrow(0, start, n).to(device, at::kFloat);
            at::Tensor y;
            if (conditional) y = labels.narrow(0, start, n).to(device, at::kLong);
            else if (C > 0) y = at::full({n}, C, at::TensorOptions().dtype(at::kLong).device(device));
            RawDenoiser raw = guided ? classifier_free_guidance(fn, y, C, control) : plain_denoiser(fn, y);
            const Denoiser denoise = make_denoiser(raw, schedule.value(), mc.prediction);
            // Each batch's noise from its own generator: results do not depend on the batch size order.
            at::Generator gen = make_generator(o.seed * 7919ULL + uint64_t(start) + 1);
            const BoundTerms bt = bound_terms(denoise, schedule.value(), x0, r.grid, fixed, o.clip_x0, gen);
            const at::Tensor total = bt.total(r.grid);
            if (!at::isfinite(total).all().item<bool>() || !at::isfinite(bt.mse).all().item<bool>())
                return Error{"bits/dim: the model gave non-finite terms for images " + std::to_string(start) + " to " +
                             std::to_string(start + n - 1) + " (damaged weights or a diverged run)"};
            totals.push_back(total);
            priors.push_back(bt.prior);
            term_sum += bt.terms.sum(0);
            mse_sum += bt.mse.sum(0);
            if (o.on_progress) o.on_progress(start + n, N);
        }
    } catch (const std::exception& e) {
        if (is_out_of_memory(e))
            return Error{"bits/dim: out of memory at a batch of " + std::to_string(batch) + " on " + device.str() +
                         "; use a smaller batch"};
        return Error{"bits/dim: " + error_message(e)};
    }
    const at::Tensor all = at::cat(totals);
    r.bpd = all.mean().item<double>();
    r.bpd_se = all.std().item<double>() / std::sqrt(double(N));
    r.prior = at::cat(priors).mean().item<double>();
    for (size_t k = 0; k < K; ++k) {
        r.term_mean.push_back(term_sum[int64_t(k)].item<double>() / double(N));
        r.mse_mean.push_back(mse_sum[int64_t(k)].item<double>() / double(N));
    }
    r.decoder = r.term_mean[0];
    for (size_t k = 1; k < K; ++k) r.diffusion += r.grid.weights[k] * r.term_mean[k];
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace dlab
