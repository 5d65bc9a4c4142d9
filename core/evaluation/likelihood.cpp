#include "core/evaluation/likelihood.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>

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
    // Strata [e_k, e_{k+1}) of 1..T-1 whose edges grow geometrically (e_k ~ T^(k/K)): the terms fall
    // roughly like 1/t, so the first timesteps, which carry most of the bound, are taken one by one
    // and a stratum's terms differ little. One uniform draw in each.
    std::vector<int64_t> edges{1};
    for (int64_t j = 1; j < strata; ++j) {
        const int64_t e = std::llround(std::pow(double(T), double(j) / double(strata)));
        edges.push_back(std::clamp<int64_t>(e, edges.back() + 1, T - (strata - j)));
    }
    edges.push_back(T);
    for (int64_t k = 0; k < strata; ++k) {
        const int64_t lo = edges[size_t(k)], hi = edges[size_t(k) + 1];
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

struct BoundRun::State {
    const LoadedModel* model = nullptr;
    BoundOptions o;
    NoiseSchedule schedule;
    BoundGrid grid;
    BoundVariance variance = BoundVariance::Small;
    at::Tensor images, labels;  // on the model's device
    int64_t N = 0, C = 0, batch = 0;
    bool conditional = false, guided = false;
    c10::Device device = c10::kCPU;
    ModelFn fn;
    std::shared_ptr<GuidanceControl> control;
    std::string variance_name, conditioning;
    // Progress: grid index k, batch start.
    size_t k = 0;
    int64_t start = 0, steps_done = 0;
    at::Tensor totals, priors;            // [N] float64 CPU
    at::Tensor term_sum, mse_sum;         // sums over images for the current timestep
    std::vector<double> term_mean, mse_mean;
    double seconds = 0;

    explicit State(NoiseSchedule s) : schedule(std::move(s)) {}
};

BoundRun::BoundRun(std::unique_ptr<State> state) : s_(std::move(state)) {}
BoundRun::~BoundRun() = default;

Result<std::unique_ptr<BoundRun>> BoundRun::create(const LoadedModel& model, const at::Tensor& images, const at::Tensor& labels,
                                                   const BoundOptions& o) {
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
    auto s = std::make_unique<State>(schedule.value());
    s->model = &model;
    s->o = o;
    s->N = N;
    s->C = C;
    s->conditional = conditional;
    s->guided = conditional && o.guidance != 1.0;
    s->device = model.network->parameters().front().device();
    s->batch = std::min(o.batch, N);
    if (auto st = check_memory_budget("bits/dim: a batch", s->batch, nc.min_activation_bytes() * (s->guided ? 2 : 1), s->device); !st)
        return Error{st.error()};
    at::Generator grid_gen = make_generator(o.seed);
    auto grid = make_bound_grid(s->schedule.timesteps(), o.strata, grid_gen);
    if (!grid) return Error{grid.error()};
    s->grid = grid.value();
    const bool learned = nc.learn_sigma && o.variance == BoundVariance::Model;
    s->variance = learned ? BoundVariance::Model : o.variance == BoundVariance::Large ? BoundVariance::Large : BoundVariance::Small;
    s->variance_name = learned ? "learned" : o.variance == BoundVariance::Large ? "large" : "small";
    char cond[64];
    std::snprintf(cond, sizeof cond, "guided s = %g", o.guidance);
    s->conditioning = C == 0 ? "unconditional model" : !conditional ? "unconditional (null class)" : s->guided ? cond : "conditional";
    try {
        s->images = images.to(s->device, at::kFloat).contiguous();
        if (conditional) s->labels = labels.to(s->device, at::kLong);
        else if (C > 0) s->labels = at::full({N}, C, at::TensorOptions().dtype(at::kLong).device(s->device));
    } catch (const std::exception& e) {
        return Error{"bits/dim: " + error_message(e)};
    }
    Network net = model.network;
    s->fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) { return net->forward(x, t, y); };
    s->control = std::make_shared<GuidanceControl>(o.guidance);
    s->totals = at::zeros({N}, at::kDouble);
    s->priors = at::zeros({N}, at::kDouble);
    s->term_sum = at::zeros({}, at::kDouble);
    s->mse_sum = at::zeros({}, at::kDouble);
    return std::unique_ptr<BoundRun>(new BoundRun(std::move(s)));
}

bool BoundRun::done() const { return s_->k >= s_->grid.timesteps.size(); }
int64_t BoundRun::steps_done() const { return s_->steps_done; }
int64_t BoundRun::timesteps_done() const { return int64_t(s_->term_mean.size()); }
int64_t BoundRun::total_steps() const {
    return int64_t(s_->grid.timesteps.size()) * ((s_->N + s_->batch - 1) / s_->batch);
}

void BoundRun::step() {
    if (done()) return;
    State& s = *s_;
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t n = std::min(s.batch, s.N - s.start);
    const int64_t t = s.grid.timesteps[s.k];
    const double w = s.grid.weights[s.k];
    const at::Tensor x0 = s.images.narrow(0, s.start, n);
    const at::Tensor y = s.labels.defined() ? s.labels.narrow(0, s.start, n) : at::Tensor();
    RawDenoiser raw = s.guided ? classifier_free_guidance(s.fn, y, s.C, s.control) : plain_denoiser(s.fn, y);
    const Denoiser denoise = make_denoiser(raw, s.schedule, s.model->config.prediction);
    // Each (timestep, batch) draws its noise from its own generator: results do not depend on the order.
    at::Generator gen = make_generator(s.o.seed * 7919ULL + uint64_t(s.k) * 1000003ULL + uint64_t(s.start) + 1);
    BoundGrid one;
    one.timesteps = {t};
    one.weights = {w};
    const BoundTerms bt = bound_terms(denoise, s.schedule, x0, one, s.variance, s.o.clip_x0, gen);
    if (!at::isfinite(bt.terms).all().item<bool>() || !at::isfinite(bt.mse).all().item<bool>())
        throw std::runtime_error("bits/dim: the model gave non-finite terms at t = " + std::to_string(t) + " for images " +
                                 std::to_string(s.start) + " to " + std::to_string(s.start + n - 1) +
                                 " (damaged weights or a diverged run)");
    s.totals.narrow(0, s.start, n).add_(w * bt.terms.select(1, 0));
    if (s.k == 0) s.priors.narrow(0, s.start, n).copy_(bt.prior);
    s.term_sum += bt.terms.sum();
    s.mse_sum += bt.mse.sum();
    ++s.steps_done;
    s.start += n;
    if (s.start >= s.N) {  // this timestep is done over every image
        s.term_mean.push_back(s.term_sum.item<double>() / double(s.N));
        s.mse_mean.push_back(s.mse_sum.item<double>() / double(s.N));
        s.term_sum.zero_();
        s.mse_sum.zero_();
        s.start = 0;
        ++s.k;
    }
    s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

BoundReport BoundRun::report() const {
    const State& s = *s_;
    BoundReport r;
    r.count = s.N;
    r.grid = s.grid;
    r.term_mean = s.term_mean;
    r.mse_mean = s.mse_mean;
    r.variance = s.variance_name;
    r.conditioning = s.conditioning;
    r.seconds = s.seconds;
    if (!done()) return r;
    const at::Tensor all = s.totals + s.priors;
    r.bpd = all.mean().item<double>();
    r.bpd_se = all.std().item<double>() / std::sqrt(double(s.N));
    r.prior = s.priors.mean().item<double>();
    r.decoder = r.term_mean[0];
    for (size_t k = 1; k < r.term_mean.size(); ++k) r.diffusion += r.grid.weights[k] * r.term_mean[k];
    return r;
}

Result<BoundReport> model_bound(const LoadedModel& model, const at::Tensor& images, const at::Tensor& labels,
                                const BoundOptions& o) {
    auto run = BoundRun::create(model, images, labels, o);
    if (!run) return Error{run.error()};
    BoundRun& r = *run.value();
    try {
        while (!r.done()) {
            if (o.cancel && o.cancel->load(std::memory_order_relaxed)) return Error{"cancelled"};
            r.step();
            if (o.on_progress) o.on_progress(r.steps_done(), r.total_steps());
        }
    } catch (const std::exception& e) {
        if (is_out_of_memory(e))
            return Error{"bits/dim: out of memory at a batch of " + std::to_string(std::min(o.batch, images.size(0))) + " on " +
                         model.network->parameters().front().device().str() + "; use a smaller batch"};
        const std::string m = error_message(e);
        return Error{m.rfind("bits/dim", 0) == 0 ? m : "bits/dim: " + m};
    }
    return r.report();
}

}  // namespace dlab
