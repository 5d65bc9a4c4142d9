#include "core/sampling/sampler.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

namespace dlab {

// Defined in one file per algorithm.
std::unique_ptr<Sampler> make_ddpm_sampler(const NoiseSchedule&, const SamplerConfig&);
std::unique_ptr<Sampler> make_ddim_sampler(const NoiseSchedule&, const SamplerConfig&);
std::unique_ptr<Sampler> make_dpmpp2m_sampler(const NoiseSchedule&, const SamplerConfig&);

std::string to_string(SamplerKind kind) {
    switch (kind) {
        case SamplerKind::Ddpm: return "ddpm";
        case SamplerKind::Ddim: return "ddim";
        case SamplerKind::DpmSolverPP2M: return "dpmpp2m";
    }
    return "unknown";
}

std::optional<SamplerKind> parse_sampler_kind(std::string_view name) {
    if (name == "ddpm") return SamplerKind::Ddpm;
    if (name == "ddim") return SamplerKind::Ddim;
    if (name == "dpmpp2m" || name == "dpm++2m" || name == "dpmsolver++") return SamplerKind::DpmSolverPP2M;
    return std::nullopt;
}

std::string to_string(TimestepSpacing spacing) {
    switch (spacing) {
        case TimestepSpacing::Leading: return "leading";
        case TimestepSpacing::Trailing: return "trailing";
        case TimestepSpacing::Linspace: return "linspace";
    }
    return "unknown";
}

std::optional<TimestepSpacing> parse_timestep_spacing(std::string_view name) {
    if (name == "leading") return TimestepSpacing::Leading;
    if (name == "trailing") return TimestepSpacing::Trailing;
    if (name == "linspace") return TimestepSpacing::Linspace;
    return std::nullopt;
}

int64_t first_step_at_or_below(const std::vector<int64_t>& timesteps, int64_t t) {
    int64_t k = 0;
    while (k + 1 < static_cast<int64_t>(timesteps.size()) && timesteps[static_cast<size_t>(k)] > t) ++k;
    return k;
}

std::vector<int64_t> make_timesteps(int64_t T, int64_t steps, TimestepSpacing spacing) {
    std::vector<int64_t> ts;
    ts.reserve(static_cast<size_t>(steps));
    switch (spacing) {
        case TimestepSpacing::Leading: {
            // arange(N) * (T // N), reversed.
            const int64_t stride = T / steps;
            for (int64_t i = steps - 1; i >= 0; --i) ts.push_back(i * stride);
            break;
        }
        case TimestepSpacing::Trailing: {
            // round(arange(T, 0, -T/N)) - 1.
            const double stride = double(T) / double(steps);
            for (int64_t i = 0; i < steps; ++i)
                ts.push_back(static_cast<int64_t>(std::llround(double(T) - i * stride)) - 1);
            break;
        }
        case TimestepSpacing::Linspace: {
            // round(linspace(0, T-1, N)), reversed.
            for (int64_t i = steps - 1; i >= 0; --i)
                ts.push_back(steps == 1 ? 0
                                        : static_cast<int64_t>(std::llround(double(T - 1) * i / double(steps - 1))));
            break;
        }
    }
    return ts;
}

Sampler::Sampler(const NoiseSchedule& schedule, const SamplerConfig& config)
    : schedule_(schedule), config_(config),
      timesteps_(make_timesteps(schedule.timesteps(), config.steps, config.spacing)) {}

double Sampler::abar(int64_t t) const { return t < 0 ? 1.0 : schedule_.alpha_bar(t); }

int64_t Sampler::next_t(int64_t i) const {
    return i + 1 < num_steps() ? timesteps_[static_cast<size_t>(i + 1)] : -1;
}

X0Eps Sampler::predict(const at::Tensor& x, int64_t t, const Denoiser& denoise) const {
    X0Eps p = denoise(x, t);
    if (p.guidance_grad.defined() && !guides_mean()) {
        // eps <- eps - sqrt(1 - abar_t) * c grad log p(y | x_t), and x0 consistent with it.
        const double a = abar(t);
        p.eps = p.eps - std::sqrt(1.0 - a) * p.guidance_grad;
        p.x0 = (x - std::sqrt(1.0 - a) * p.eps) / std::sqrt(a);
        p.guidance_grad = at::Tensor();
    }
    if (config_.clip_x0 && config_.dynamic_threshold > 0) {
        // s_i = max(clip, percentile_p |x0_i|); x0_i <- clamp(x0_i, -s_i, s_i) * clip / s_i
        const int64_t n = p.x0.size(0);
        const at::Tensor flat = p.x0.reshape({n, -1}).abs().to(at::kFloat);
        at::Tensor s = at::quantile(flat, config_.dynamic_threshold, 1, true).clamp_min(config_.clip_value).to(p.x0.scalar_type());
        std::vector<int64_t> shape(static_cast<size_t>(p.x0.dim()), 1);
        shape[0] = n;
        s = s.view(shape);
        p.x0 = at::max(at::min(p.x0, s), -s) * (config_.clip_value / s);
        const double a = abar(t);
        if (a < 1.0) p.eps = (x - std::sqrt(a) * p.x0) / std::sqrt(1.0 - a);
    } else if (config_.clip_x0) {
        p.x0 = p.x0.clamp(-config_.clip_value, config_.clip_value);
        const double a = abar(t);
        if (a < 1.0) p.eps = (x - std::sqrt(a) * p.x0) / std::sqrt(1.0 - a);
    }
    return p;
}

at::Tensor Sampler::noise_like(const at::Tensor& x, at::Generator& gen) {
    return at::randn(x.sizes(), gen, at::TensorOptions().dtype(at::kFloat))
        .to(x.device(), x.scalar_type());
}

Result<std::unique_ptr<Sampler>> make_sampler(const NoiseSchedule& schedule,
                                              const SamplerConfig& config) {
    if (config.steps < 1 || config.steps > schedule.timesteps()) {
        return Error{"sampler: steps must be between 1 and " + std::to_string(schedule.timesteps()) +
                     ", got " + std::to_string(config.steps)};
    }
    if (!(config.dynamic_threshold >= 0.0 && config.dynamic_threshold <= 1.0))
        return Error{"sampler: the dynamic threshold is a percentile in (0, 1] (0: off), got " +
                     std::to_string(config.dynamic_threshold)};
    if (config.dynamic_threshold > 0 && !config.clip_x0)
        return Error{"sampler: dynamic thresholding clips x0; it cannot be combined with no clipping"};
    if (!(config.eta >= 0.0 && config.eta <= 1.0)) {
        return Error{"sampler: eta must be between 0 and 1"};
    }
    switch (config.kind) {
        case SamplerKind::Ddpm: return make_ddpm_sampler(schedule, config);
        case SamplerKind::Ddim: return make_ddim_sampler(schedule, config);
        case SamplerKind::DpmSolverPP2M: return make_dpmpp2m_sampler(schedule, config);
    }
    return Error{"sampler: unknown kind"};
}

ChainResult run_chain(Sampler& sampler, at::Tensor x, const Denoiser& denoise, at::Generator& gen,
                      const ChainHooks& hooks, int64_t start) {
    c10::NoGradGuard no_grad;
    ChainResult result;
    const int64_t n = sampler.num_steps();
    for (int64_t i = start; i < n; ++i) {
        if (hooks.cancel && hooks.cancel->load(std::memory_order_relaxed)) {
            result.cancelled = true;
            break;
        }
        StepOutput out = sampler.step(i, x, denoise, gen);
        if (hooks.on_step) {
            hooks.on_step(StepInfo{i, n, sampler.timesteps()[static_cast<size_t>(i)], x, out.x0,
                                   out.eps, out.x_prev});
        }
        x = out.x_prev;
        ++result.steps_done;
    }
    result.x = x;
    return result;
}

at::Generator make_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

}  // namespace dlab
