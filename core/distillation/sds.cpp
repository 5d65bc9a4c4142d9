#include "core/distillation/sds.h"

#include <cmath>

#include <ATen/ATen.h>

namespace dlab {

at::Tensor sds_gradient(const ModelFn& model, const NoiseSchedule& schedule, const at::Tensor& x, const at::Tensor& labels,
                        int64_t null_label, const SdsConfig& c, at::Generator& gen, SdsSample* sample) {
    TORCH_CHECK(c.t_lo >= 0 && c.t_hi <= 1 && c.t_lo < c.t_hi, "sds: the t range must lie in [0, 1]");
    const int64_t B = x.size(0), T = schedule.timesteps();
    const auto dev = x.device();
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(c.t_lo * T)));
    const int64_t hi = std::min<int64_t>(T - 1, static_cast<int64_t>(std::ceil(c.t_hi * T)));
    const at::Tensor t = at::randint(lo, hi + 1, {B}, gen, f32.dtype(at::kLong));
    const at::Tensor eps = at::randn(x.sizes(), gen, f32);
    const at::Tensor abar = schedule.alpha_bars().to(at::kFloat).index_select(0, t);  // [B]
    std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
    shape[0] = B;
    const at::Tensor a = abar.sqrt().view(shape).to(dev), s = (1 - abar).sqrt().view(shape).to(dev);
    at::NoGradGuard no_grad;  // the denoiser's Jacobian is left out (that is SDS)
    const at::Tensor xd = x.detach().to(at::kFloat);
    const at::Tensor xt = a * xd + s * eps.to(dev);
    const at::Tensor td = t.to(dev);
    at::Tensor eps_hat;
    if (labels.defined() && c.guidance != 1.0) {
        const at::Tensor null = at::full_like(labels, null_label);
        const at::Tensor out = model(at::cat({xt, xt}), at::cat({td, td}), at::cat({labels.to(dev), null.to(dev)}));
        const at::Tensor oc = out.narrow(0, 0, B).narrow(1, 0, x.size(1)), ou = out.narrow(0, B, B).narrow(1, 0, x.size(1));
        const at::Tensor ec = schedule.split_prediction(c.prediction, oc, xt, td).eps;
        const at::Tensor eu = schedule.split_prediction(c.prediction, ou, xt, td).eps;
        eps_hat = eu + c.guidance * (ec - eu);
    } else {
        const at::Tensor out = model(xt, td, labels.defined() ? labels.to(dev) : labels).narrow(1, 0, x.size(1));
        eps_hat = schedule.split_prediction(c.prediction, out, xt, td).eps;
    }
    const at::Tensor w = (1 - abar).to(dev);
    if (sample) *sample = {t, eps, eps_hat, w};
    return w.view(shape) * (eps_hat - eps.to(dev));
}

at::Tensor render_voxels(const at::Tensor& density, const at::Tensor& brightness, double azimuth, int64_t size,
                         double background, at::Tensor* transmittance) {
    TORCH_CHECK(density.dim() == 3 && brightness.sizes() == density.sizes(), "render_voxels: density and brightness [D, H, W]");
    TORCH_CHECK(size >= 1 && size <= 1024, "render_voxels: size must be in 1..1024");
    const auto opts = density.options().dtype(at::kFloat);
    // The grid seen from the camera: sample it on a rotated lattice (about the vertical axis y).
    // Output axes: x (columns), y (rows), z (depth, the rays); input sampled at R (x, y, z).
    const double cs = std::cos(azimuth), sn = std::sin(azimuth);
    const at::Tensor theta = at::tensor({float(cs), 0.f, float(sn), 0.f,  //
                                         0.f, 1.f, 0.f, 0.f,                //
                                         float(-sn), 0.f, float(cs), 0.f},
                                        opts)
                                 .view({1, 3, 4});
    const at::Tensor grid = at::affine_grid_generator(theta, {1, 2, size, size, size}, true);
    const at::Tensor volume = at::stack({density, brightness}, 0).unsqueeze(0).to(at::kFloat);  // [1, 2, D, H, W]
    const at::Tensor seen = at::grid_sampler(volume, grid, 0 /*bilinear*/, 0 /*zeros*/, true)[0];  // [2, z, y, x]
    const at::Tensor sigma = seen[0].clamp_min(0), color = seen[1];
    const double delta = 2.0 / double(size);
    const at::Tensor alpha = 1 - at::exp(-sigma * delta);                              // [z, y, x]
    const at::Tensor through = at::cumsum(sigma * delta, 0);                           // optical depth after each sample
    const at::Tensor before = at::exp(-(through - sigma * delta));                     // T_i, light reaching sample i
    const at::Tensor end = at::exp(-through[size - 1]);                                // [y, x]
    if (transmittance) *transmittance = end.detach();
    return ((before * alpha * color).sum(0) + end * background).unsqueeze(0);
}

}  // namespace dlab
