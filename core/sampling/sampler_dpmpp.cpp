// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): multistep second-order solver of the diffusion
// ODE in log-SNR time lambda = log(alpha / sigma), alpha = sqrt(abar), sigma = sqrt(1 - abar),
// with the data (x0) prediction. The first step is first order (no history yet) and the last
// step, which reaches sigma = 0, returns the denoised estimate (lower-order final step).
#include <cmath>

#include <ATen/ATen.h>

#include "core/sampling/sampler.h"

namespace dlab {

namespace {

class DpmSolverPP2M final : public Sampler {
public:
    using Sampler::Sampler;

    void reset() override {
        prev_x0_ = at::Tensor();
        prev_h_ = 0.0;
        prev_index_ = -2;
    }

    StepOutput step(int64_t i, const at::Tensor& x, const Denoiser& denoise,
                    at::Generator& gen) override {
        const int64_t t = timesteps_[static_cast<size_t>(i)], s = next_t(i);
        const X0Eps p = predict(x, t, denoise);
        if (prev_index_ != i - 1) reset();  // history only across consecutive steps
        at::Tensor x_prev;
        double h = 0.0;
        if (s < 0) {
            x_prev = p.x0;  // sigma_s = 0: the ODE's end point is the denoised sample
        } else {
            const double ab_t = abar(t), ab_s = abar(s);
            const double alpha_s = std::sqrt(ab_s), sigma_s = std::sqrt(1.0 - ab_s);
            const double sigma_t = std::sqrt(1.0 - ab_t);
            const double lambda_t = 0.5 * std::log(ab_t / (1.0 - ab_t));
            const double lambda_s = 0.5 * std::log(ab_s / (1.0 - ab_s));
            h = lambda_s - lambda_t;
            at::Tensor d = p.x0;
            if (prev_x0_.defined()) {
                // D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1} / h_i.
                const double r = prev_h_ / h;
                d = (1.0 + 0.5 / r) * p.x0 - (0.5 / r) * prev_x0_;
            }
            // x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D.
            x_prev = (sigma_s / sigma_t) * x - alpha_s * std::expm1(-h) * d;
        }
        prev_x0_ = p.x0;
        prev_h_ = h;
        prev_index_ = i;
        return {x_prev, p.x0, p.eps};
    }

private:
    at::Tensor prev_x0_;
    double prev_h_ = 0.0;
    int64_t prev_index_ = -2;
};

}  // namespace

std::unique_ptr<Sampler> make_dpmpp2m_sampler(const NoiseSchedule& s, const SamplerConfig& c) {
    return std::make_unique<DpmSolverPP2M>(s, c);
}

}  // namespace dlab
