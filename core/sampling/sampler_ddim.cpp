// DDIM (Song et al. 2021, eq. 12): x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat
// + sigma z, with sigma = eta sqrt((1 - abar_s)/(1 - abar_t)) sqrt(1 - abar_t / abar_s) (eq. 16).
#include <cmath>

#include <ATen/ATen.h>

#include "core/sampling/sampler.h"

namespace dlab {

namespace {

class DdimSampler final : public Sampler {
public:
    using Sampler::Sampler;

    StepOutput step(int64_t i, const at::Tensor& x, const Denoiser& denoise,
                    at::Generator& gen) override {
        const int64_t t = timesteps_[static_cast<size_t>(i)], s = next_t(i);
        const X0Eps p = predict(x, t, denoise);
        const double ab_t = abar(t), ab_s = abar(s);
        const double sigma = config_.eta * std::sqrt((1.0 - ab_s) / (1.0 - ab_t)) *
                             std::sqrt(std::max(0.0, 1.0 - ab_t / ab_s));
        const double dir = std::sqrt(std::max(0.0, 1.0 - ab_s - sigma * sigma));
        at::Tensor x_prev = std::sqrt(ab_s) * p.x0 + dir * p.eps;
        if (sigma > 0.0) x_prev = x_prev + sigma * noise_like(x, gen);
        return {x_prev, p.x0, p.eps};
    }
};

}  // namespace

std::unique_ptr<Sampler> make_ddim_sampler(const NoiseSchedule& s, const SamplerConfig& c) {
    return std::make_unique<DdimSampler>(s, c);
}

}  // namespace dlab
