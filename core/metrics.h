#pragma once
// Sample-quality metrics, accumulated in float64 (../shared/MATH.md, Evaluation).

#include <ATen/core/Tensor.h>

namespace dlab {

/// Mean and covariance of a feature set.
struct FeatureStats {
    at::Tensor mean;  ///< [D] float64
    at::Tensor cov;   ///< [D,D] float64 (unbiased)
    int64_t count = 0;
};

/// Statistics of features [N,D] (any float dtype; computed in float64).
FeatureStats feature_stats(const at::Tensor& features);

/// Frechet distance between the Gaussians fitted to two feature sets:
/// ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with Tr (S1 S2)^(1/2) computed as the sum of
/// the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric, so eigh is exact).
double frechet_distance(const FeatureStats& a, const FeatureStats& b);

/// Fraction of rows of `logits` whose argmax equals `labels`.
double class_agreement(const at::Tensor& logits, const at::Tensor& labels);

}  // namespace dlab
