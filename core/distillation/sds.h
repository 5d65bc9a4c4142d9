#pragma once
// core/distillation/ -- score distillation sampling (DreamFusion, Poole et al. 2022): no chain is
// sampled; a parameterised image (or a 3-D scene rendered to one) is pushed towards what a frozen
// diffusion model finds likely, by the gradient w(t) (eps_hat(x_t; y, s) - eps) with x_t the noised
// render. Also the differentiable volume renderer of a voxel scene that SDS optimises in 3-D.

#include <cstdint>

#include <ATen/ATen.h>

#include "core/forward/schedule.h"
#include "core/guidance/guidance.h"

namespace dlab {

/// The published choices: t uniform in [t_lo, t_hi] T, w(t) = 1 - abar_t, large guidance scales.
struct SdsConfig {
    double t_lo = 0.02, t_hi = 0.98;
    double guidance = 100.0;   ///< classifier-free scale s (DreamFusion used 100)
    PredictionType prediction = PredictionType::Eps;
};

/// One SDS term, kept for the views and for tests.
struct SdsSample {
    at::Tensor t;        ///< [B] the timesteps drawn
    at::Tensor eps;      ///< the noise drawn
    at::Tensor eps_hat;  ///< the guided prediction of it
    at::Tensor weight;   ///< [B] w(t) = 1 - abar_t
};

/// The SDS gradient with respect to x ([B, ...] in model space): w(t) (eps_hat - eps), not back-
/// propagated through the denoiser. Guidance batches [x_t; x_t] with [labels; null_label]; with
/// undefined labels the plain model. `gen` draws t and eps.
at::Tensor sds_gradient(const ModelFn& model, const NoiseSchedule& schedule, const at::Tensor& x,
                        const at::Tensor& labels, int64_t null_label, const SdsConfig& config, at::Generator& gen,
                        SdsSample* sample = nullptr);

/// Orthographic emission-absorption rendering of a voxel scene seen from `azimuth` radians about
/// its vertical axis: density [D, H, W] (>= 0, per unit length, the cube spanning [-1, 1]^3) and
/// brightness [D, H, W] in [-1, 1] give a [1, size, size] image: sum_i T_i (1 - exp(-sigma_i delta)) c_i
/// + T_end * background, T_i = exp(-sum_{j<i} sigma_j delta) along each ray, delta = 2 / size.
/// Differentiable in density and brightness. `transmittance` (if given) gets T_end [size, size].
at::Tensor render_voxels(const at::Tensor& density, const at::Tensor& brightness, double azimuth, int64_t size,
                         double background = -1.0, at::Tensor* transmittance = nullptr);

}  // namespace dlab
