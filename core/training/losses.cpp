#include "core/training/losses.h"

#include <cmath>

#include <ATen/ATen.h>

namespace dlab {

at::Tensor normal_kl(const at::Tensor& mean1, const at::Tensor& logvar1, const at::Tensor& mean2,
                     const at::Tensor& logvar2) {
    return 0.5 * (-1.0 + logvar2 - logvar1 + at::exp(logvar1 - logvar2) +
                  (mean1 - mean2).pow(2) * at::exp(-logvar2));
}

at::Tensor standard_normal_cdf(const at::Tensor& x) { return 0.5 * (1.0 + at::erf(x / std::sqrt(2.0))); }

at::Tensor discretized_gaussian_log_likelihood(const at::Tensor& x, const at::Tensor& mean,
                                               const at::Tensor& log_scale) {
    const double half_bin = 1.0 / 255.0;  // 256 levels over [-1, 1]: bins of width 2/255
    const at::Tensor centred = x - mean;
    const at::Tensor inv_std = at::exp(-log_scale);
    const at::Tensor cdf_hi = standard_normal_cdf(inv_std * (centred + half_bin));
    const at::Tensor cdf_lo = standard_normal_cdf(inv_std * (centred - half_bin));
    const at::Tensor log_cdf_hi = at::log(cdf_hi.clamp_min(1e-12));               // bin (-inf, x+h]
    const at::Tensor log_one_minus_cdf_lo = at::log((1.0 - cdf_lo).clamp_min(1e-12));  // [x-h, inf)
    const at::Tensor log_mid = at::log((cdf_hi - cdf_lo).clamp_min(1e-12));
    return at::where(x < -0.999, log_cdf_hi, at::where(x > 0.999, log_one_minus_cdf_lo, log_mid));
}

at::Tensor learned_log_variance(const at::Tensor& v, const at::Tensor& log_beta,
                                const at::Tensor& log_beta_tilde) {
    const at::Tensor f = (v + 1.0) * 0.5;
    return f * log_beta + (1.0 - f) * log_beta_tilde;
}

}  // namespace dlab
