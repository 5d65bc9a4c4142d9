#pragma once
// Terms of the variational bound (Ho et al. 2020; Nichol & Dhariwal 2021, "Improved DDPM") used by
// the hybrid loss with a learned variance, and the learned-variance parametrisation itself.

#include <ATen/core/Tensor.h>

namespace dlab {

/// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats.
at::Tensor normal_kl(const at::Tensor& mean1, const at::Tensor& logvar1, const at::Tensor& mean2,
                     const at::Tensor& logvar2);

/// Standard normal CDF, elementwise.
at::Tensor standard_normal_cdf(const at::Tensor& x);

/// log-probability (nats) of data `x` in [-1, 1], quantised to 256 levels, under
/// N(mean, exp(log_scale)^2) integrated over each level's bin (the edge bins extend to infinity).
at::Tensor discretized_gaussian_log_likelihood(const at::Tensor& x, const at::Tensor& mean,
                                               const at::Tensor& log_scale);

/// Improved DDPM's learned variance: the network's extra output v in [-1, 1] interpolates the log
/// variance between beta_t (v = 1) and the posterior beta~_t (v = -1):
/// log sigma^2 = f log beta + (1 - f) log beta~, f = (v + 1) / 2. Logs broadcast against v.
at::Tensor learned_log_variance(const at::Tensor& v, const at::Tensor& log_beta,
                                const at::Tensor& log_beta_tilde);

}  // namespace dlab
