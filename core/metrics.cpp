#include "core/metrics.h"

#include <ATen/ATen.h>

namespace dlab {

FeatureStats feature_stats(const at::Tensor& features) {
    const at::Tensor f = features.to(at::kCPU, at::kDouble).flatten(1);
    FeatureStats s;
    s.count = f.size(0);
    s.mean = f.mean(0);
    const at::Tensor c = f - s.mean;
    s.cov = at::matmul(c.t(), c) / double(std::max<int64_t>(1, s.count - 1));
    return s;
}

namespace {

// Symmetric PSD square root through the eigendecomposition (negative round-off clamped to 0).
at::Tensor sqrt_psd(const at::Tensor& m) {
    auto [w, v] = at::linalg_eigh((m + m.t()) / 2);
    return at::matmul(v * w.clamp_min(0).sqrt().unsqueeze(0), v.t());
}

}  // namespace

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
    const double mean_term = (a.mean - b.mean).pow(2).sum().item<double>();
    const at::Tensor r = sqrt_psd(a.cov);
    const at::Tensor m = at::matmul(at::matmul(r, b.cov), r);
    const at::Tensor w = at::linalg_eigvalsh((m + m.t()) / 2);
    const double tr_sqrt = w.clamp_min(0).sqrt().sum().item<double>();
    return mean_term + a.cov.trace().item<double>() + b.cov.trace().item<double>() - 2.0 * tr_sqrt;
}

double class_agreement(const at::Tensor& logits, const at::Tensor& labels) {
    return (logits.argmax(1).cpu() == labels.cpu()).to(at::kDouble).mean().item<double>();
}

}  // namespace dlab
