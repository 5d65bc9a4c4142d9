#include "core/forward/schedule.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include <ATen/ATen.h>

namespace dlab {

namespace {

const at::TensorOptions kF64 = at::TensorOptions().dtype(at::kDouble);

std::string lowercase(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

std::string to_string(ScheduleKind kind) {
    switch (kind) {
        case ScheduleKind::Linear: return "linear";
        case ScheduleKind::Cosine: return "cosine";
        case ScheduleKind::ScaledLinear: return "scaled-linear";
        case ScheduleKind::Sigmoid: return "sigmoid";
    }
    return "unknown";
}

std::optional<ScheduleKind> parse_schedule_kind(std::string_view name) {
    const std::string n = lowercase(name);
    if (n == "linear") return ScheduleKind::Linear;
    if (n == "cosine" || n == "squaredcos_cap_v2") return ScheduleKind::Cosine;
    if (n == "scaled-linear" || n == "scaled_linear") return ScheduleKind::ScaledLinear;
    if (n == "sigmoid") return ScheduleKind::Sigmoid;
    return std::nullopt;
}

const std::vector<ScheduleKind>& all_schedule_kinds() {
    static const std::vector<ScheduleKind> kinds = {ScheduleKind::Linear, ScheduleKind::Cosine,
                                                    ScheduleKind::ScaledLinear,
                                                    ScheduleKind::Sigmoid};
    return kinds;
}

std::string to_string(PredictionType type) {
    switch (type) {
        case PredictionType::Eps: return "eps";
        case PredictionType::X0: return "x0";
        case PredictionType::V: return "v";
    }
    return "unknown";
}

std::optional<PredictionType> parse_prediction_type(std::string_view name) {
    const std::string n = lowercase(name);
    if (n == "eps" || n == "epsilon") return PredictionType::Eps;
    if (n == "x0" || n == "sample") return PredictionType::X0;
    if (n == "v" || n == "v_prediction" || n == "v-prediction") return PredictionType::V;
    return std::nullopt;
}

Result<at::Tensor> make_betas(const ScheduleConfig& c) {
    const int64_t T = c.timesteps;
    if (T < 2 || T > 100000) {
        return Error{"timesteps must be between 2 and 100000, got " + std::to_string(T)};
    }
    auto check_range = [](double b0, double b1) -> std::optional<std::string> {
        if (!(b0 > 0.0) || !(b1 < 1.0) || !(b0 <= b1) || !std::isfinite(b0) || !std::isfinite(b1)) {
            std::ostringstream s;
            s << "beta range must satisfy 0 < beta_start <= beta_end < 1, got [" << b0 << ", "
              << b1 << "]";
            return s.str();
        }
        return std::nullopt;
    };

    switch (c.kind) {
        case ScheduleKind::Linear: {
            // Ho et al. 2020: beta_t = linspace(1e-4, 0.02, T); improved-diffusion scales by 1000/T.
            const double scale = c.rescale_to_T ? 1000.0 / static_cast<double>(T) : 1.0;
            const double b0 = c.beta_start * scale, b1 = c.beta_end * scale;
            if (auto e = check_range(b0, b1)) return Error{"linear schedule: " + *e};
            return at::linspace(b0, b1, T, kF64);
        }
        case ScheduleKind::ScaledLinear: {
            // Latent diffusion: beta = linspace(sqrt(b0), sqrt(b1), T)^2 with b0 = 8.5e-4, b1 = 1.2e-2.
            const bool defaults = c.beta_start == 1e-4 && c.beta_end == 0.02;
            const double b0 = defaults ? 8.5e-4 : c.beta_start;
            const double b1 = defaults ? 1.2e-2 : c.beta_end;
            if (auto e = check_range(b0, b1)) return Error{"scaled-linear schedule: " + *e};
            return at::linspace(std::sqrt(b0), std::sqrt(b1), T, kF64).pow(2);
        }
        case ScheduleKind::Cosine: {
            // Nichol & Dhariwal 2021, eq. 17: abar(t) = f(t)/f(0), f(u) = cos^2(((u+s)/(1+s)) pi/2);
            // beta_i = min(1 - f((i+1)/T) / f(i/T), max_beta).
            if (!(c.cosine_s >= 0.0) || !(c.max_beta > 0.0 && c.max_beta < 1.0)) {
                return Error{"cosine schedule: need s >= 0 and 0 < max_beta < 1"};
            }
            const double s = c.cosine_s;
            auto f = [s](const at::Tensor& u) {
                return at::cos((u + s) / (1.0 + s) * (M_PI / 2.0)).pow(2);
            };
            const at::Tensor i = at::arange(T, kF64);
            const at::Tensor ratio = f((i + 1.0) / static_cast<double>(T)) / f(i / static_cast<double>(T));
            return at::clamp_max(1.0 - ratio, c.max_beta);
        }
        case ScheduleKind::Sigmoid: {
            // GeoDiff-style sigmoid schedule: sigmoid(linspace(-6, 6, T)) rescaled so that its ends
            // are exactly beta_start and beta_end.
            if (auto e = check_range(c.beta_start, c.beta_end)) return Error{"sigmoid schedule: " + *e};
            const at::Tensor sig = at::sigmoid(at::linspace(-6.0, 6.0, T, kF64));
            const double lo = 1.0 / (1.0 + std::exp(6.0)), hi = 1.0 / (1.0 + std::exp(-6.0));
            return (sig - lo) / (hi - lo) * (c.beta_end - c.beta_start) + c.beta_start;
        }
    }
    return Error{"unknown schedule kind"};
}

at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas) {
    // Lin et al. 2024, Algorithm 1.
    at::Tensor sqrt_abar = at::cumprod(1.0 - betas.to(at::kDouble), 0).sqrt();
    const double first = sqrt_abar[0].item<double>();
    const double last = sqrt_abar[-1].item<double>();
    sqrt_abar = (sqrt_abar - last) * (first / (first - last));  // last -> 0, first unchanged
    const at::Tensor abar = sqrt_abar.pow(2);
    const int64_t T = abar.size(0);
    at::Tensor alphas = at::empty_like(abar);
    alphas[0] = abar[0];
    alphas.slice(0, 1, T) = abar.slice(0, 1, T) / abar.slice(0, 0, T - 1);
    return 1.0 - alphas;
}

std::string schedule_summary(const ScheduleConfig& c) {
    std::string text = to_string(c.kind);
    if (c.snr_shift != 1.0) {
        char buf[48];
        std::snprintf(buf, sizeof buf, ", SNR x %g", c.snr_shift);
        text += buf;
    }
    if (c.zero_terminal_snr) text += ", zero terminal SNR";
    return text;
}

at::Tensor shift_snr(const at::Tensor& betas, double factor) {
    // SNR' = factor * SNR, so abar' = factor * abar / (1 + (factor - 1) * abar); then
    // beta'_t = 1 - abar'_t / abar'_{t-1} (abar'_{-1} = 1).
    const at::Tensor abar = at::cumprod(1.0 - betas.to(at::kDouble), 0);
    const at::Tensor shifted = factor * abar / (1.0 + (factor - 1.0) * abar);
    const at::Tensor prev = at::cat({at::ones({1}, shifted.options()), shifted.slice(0, 0, shifted.size(0) - 1)});
    return 1.0 - shifted / prev;
}

Result<NoiseSchedule> NoiseSchedule::create(const ScheduleConfig& config) {
    auto betas = make_betas(config);
    if (!betas) return Error{betas.error()};
    if (!(config.snr_shift >= kMinSnrShift && config.snr_shift <= kMaxSnrShift))
        return Error{"SNR shift: need a factor from 0.001 to 1000 (1: no shift)"};
    NoiseSchedule schedule(config);
    at::Tensor b = betas.value();
    if (config.snr_shift != 1.0) b = shift_snr(b, config.snr_shift);
    if (config.zero_terminal_snr) b = rescale_zero_terminal_snr(b);
    schedule.derive_from_betas(b);
    return schedule;
}

void NoiseSchedule::derive_from_betas(at::Tensor betas) {
    const int64_t T = betas.size(0);
    betas_ = betas.contiguous();
    alphas_ = 1.0 - betas_;
    alpha_bars_ = at::cumprod(alphas_, 0);
    alpha_bars_prev_ = at::cat({at::ones({1}, kF64), alpha_bars_.slice(0, 0, T - 1)});
    // SNR(t) = abar_t / (1 - abar_t); lambda_t = log(sqrt(abar_t) / sqrt(1 - abar_t)) = log(SNR)/2.
    snr_ = alpha_bars_ / (1.0 - alpha_bars_);
    log_snr_ = 0.5 * at::log(snr_);
    // Posterior q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 6-7):
    // beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, clamped at 1e-20 for the log.
    posterior_variance_ = (1.0 - alpha_bars_prev_) / (1.0 - alpha_bars_) * betas_;
    // Its log, "clipped" as in Improved DDPM: index 0, where beta~_0 = 0, takes beta~_1 (a reverse
    // step of zero width would make the decoder term infinite); clamped at 1e-20 for T = 1.
    posterior_log_var_ = at::log(at::clamp_min(
        T > 1 ? at::cat({posterior_variance_.slice(0, 1, 2), posterior_variance_.slice(0, 1, T)}) : posterior_variance_, 1e-20));
    // mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t)(1 - abar_{t-1})/(1 - abar_t) x_t
    coef_x0_ = alpha_bars_prev_.sqrt() * betas_ / (1.0 - alpha_bars_);
    coef_xt_ = alphas_.sqrt() * (1.0 - alpha_bars_prev_) / (1.0 - alpha_bars_);
    sqrt_abar_ = alpha_bars_.sqrt();
    sqrt_one_minus_abar_ = (1.0 - alpha_bars_).sqrt();
}

at::Tensor NoiseSchedule::gather(const at::Tensor& table, const at::Tensor& t, const at::Tensor& like) {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == like.size(0),
                "timestep tensor must be [B] with B = ", like.size(0), ", got ", t.sizes());
    // Index on the CPU (the tables are small float64), then move B values once.
    at::Tensor idx = t.to(at::kCPU, at::kLong);
    TORCH_CHECK(idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < table.size(0),
                "timestep out of range [0, ", table.size(0) - 1, "]");
    std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
    shape[0] = like.size(0);
    return table.index_select(0, idx).to(like.device(), like.scalar_type()).view(shape);
}

at::Tensor NoiseSchedule::add_noise(const at::Tensor& x0, const at::Tensor& eps,
                                    const at::Tensor& t) const {
    // q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)  (Ho et al. 2020, eq. 4).
    return gather(sqrt_abar_, t, x0) * x0 + gather(sqrt_one_minus_abar_, t, x0) * eps;
}

at::Tensor NoiseSchedule::posterior_mean(const at::Tensor& x0, const at::Tensor& xt,
                                         const at::Tensor& t) const {
    return gather(coef_x0_, t, xt) * x0 + gather(coef_xt_, t, xt) * xt;
}

at::Tensor NoiseSchedule::posterior_variance_like(const at::Tensor& t, const at::Tensor& like) const {
    return gather(posterior_variance_, t, like);
}

at::Tensor NoiseSchedule::x0_from_eps(const at::Tensor& xt, const at::Tensor& eps,
                                      const at::Tensor& t) const {
    return (xt - gather(sqrt_one_minus_abar_, t, xt) * eps) / gather(sqrt_abar_, t, xt);
}

at::Tensor NoiseSchedule::eps_from_x0(const at::Tensor& xt, const at::Tensor& x0,
                                      const at::Tensor& t) const {
    return (xt - gather(sqrt_abar_, t, xt) * x0) / gather(sqrt_one_minus_abar_, t, xt);
}

at::Tensor NoiseSchedule::v_from(const at::Tensor& x0, const at::Tensor& eps,
                                 const at::Tensor& t) const {
    return gather(sqrt_abar_, t, x0) * eps - gather(sqrt_one_minus_abar_, t, x0) * x0;
}

at::Tensor NoiseSchedule::x0_from_v(const at::Tensor& xt, const at::Tensor& v,
                                    const at::Tensor& t) const {
    return gather(sqrt_abar_, t, xt) * xt - gather(sqrt_one_minus_abar_, t, xt) * v;
}

at::Tensor NoiseSchedule::eps_from_v(const at::Tensor& xt, const at::Tensor& v,
                                     const at::Tensor& t) const {
    return gather(sqrt_one_minus_abar_, t, xt) * xt + gather(sqrt_abar_, t, xt) * v;
}

X0Eps NoiseSchedule::split_prediction(PredictionType type, const at::Tensor& out,
                                      const at::Tensor& xt, const at::Tensor& t) const {
    switch (type) {
        case PredictionType::Eps: return {x0_from_eps(xt, out, t), out, {}, {}};
        case PredictionType::X0: return {out, eps_from_x0(xt, out, t), {}, {}};
        case PredictionType::V: return {x0_from_v(xt, out, t), eps_from_v(xt, out, t), {}, {}};
    }
    return {out, out, {}, {}};
}

X0Eps NoiseSchedule::split_prediction(PredictionType type, const at::Tensor& out, const at::Tensor& xt,
                                      int64_t t) const {
    TORCH_CHECK(t >= 0 && t < sqrt_abar_.size(0), "timestep ", t, " out of range [0, ", sqrt_abar_.size(0) - 1, "]");
    // The same formulas as the per-sample ones above, with scalar coefficients (as float32
    // multipliers of float32 tensors they round as the gathered [B, 1, ...] tables do).
    const double a = sqrt_abar_[t].item<double>(), s = sqrt_one_minus_abar_[t].item<double>();
    switch (type) {
        case PredictionType::Eps: return {(xt - s * out) / a, out, {}, {}};
        case PredictionType::X0: return {out, (xt - a * out) / s, {}, {}};
        case PredictionType::V: return {a * xt - s * out, s * xt + a * out, {}, {}};
    }
    return {out, out, {}, {}};
}

double NoiseSchedule::beta(int64_t t) const { return betas_[t].item<double>(); }
double NoiseSchedule::alpha_bar(int64_t t) const { return alpha_bars_[t].item<double>(); }
double NoiseSchedule::alpha_bar_prev(int64_t t) const { return alpha_bars_prev_[t].item<double>(); }

}  // namespace dlab
