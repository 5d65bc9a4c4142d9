// DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), generalised to a subsequence of
// timesteps t -> s by treating abar_t / abar_s as the one-step alpha (Nichol & Dhariwal 2021, 4).
#include <cmath>

#include <ATen/ATen.h>

#include "core/training/losses.h"
#include "core/sampling/sampler.h"

namespace dlab {

namespace {

class DdpmSampler final : public Sampler {
public:
    using Sampler::Sampler;
    bool guides_mean() const override { return true; }

    StepOutput step(int64_t i, const at::Tensor& x, const Denoiser& denoise,
                    at::Generator& gen) override {
        const int64_t t = timesteps_[static_cast<size_t>(i)], s = next_t(i);
        const X0Eps p = predict(x, t, denoise);
        const double ab_t = abar(t), ab_s = abar(s);
        const double alpha = ab_t / ab_s, beta = 1.0 - alpha;
        // Posterior q(x_s | x_t, x0_hat), eq. 7: mean and variance beta~.
        const double c_x0 = std::sqrt(ab_s) * beta / (1.0 - ab_t);
        const double c_xt = std::sqrt(alpha) * (1.0 - ab_s) / (1.0 - ab_t);
        at::Tensor x_prev = c_x0 * p.x0 + c_xt * x;
        if (s >= 0) {
            const double var = std::max((1.0 - ab_s) / (1.0 - ab_t) * beta, 1e-20);
            const at::Tensor z = noise_like(x, gen);
            if (p.var_v.defined()) {
                // Learned variance (Improved DDPM): between beta and beta~ of this (respaced) step.
                const at::Tensor log_var = learned_log_variance(
                    p.var_v.clamp(-1.0, 1.0), at::full({}, std::log(beta), p.var_v.options()),
                    at::full({}, std::log(var), p.var_v.options()));
                const at::Tensor sigma2 = at::exp(log_var);
                // Classifier guidance: the mean moves by Sigma * c grad log p(y | x_t).
                if (p.guidance_grad.defined()) x_prev = x_prev + sigma2 * p.guidance_grad;
                x_prev = x_prev + at::sqrt(sigma2) * z;
            } else {
                if (p.guidance_grad.defined()) x_prev = x_prev + var * p.guidance_grad;
                x_prev = x_prev + std::sqrt(var) * z;  // + sigma_t z, z ~ N(0, I)
            }
        }
        return {x_prev, p.x0, p.eps};
    }
};

}  // namespace

std::unique_ptr<Sampler> make_ddpm_sampler(const NoiseSchedule& s, const SamplerConfig& c) {
    return std::make_unique<DdpmSampler>(s, c);
}

}  // namespace dlab
