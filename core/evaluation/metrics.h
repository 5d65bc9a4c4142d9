#pragma once
// core/evaluation/ -- measuring samples: FID and sFID (Frechet distance of feature Gaussians),
// Inception Score, precision/recall, diversity and class agreement (`metrics.h`); the feature
// networks they use (`feature_net.h`: the bundled Fashion-MNIST classifier or a TorchScript
// module) and that domain classifier itself (`classifier.h`).
//
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

/// Inception Score (Salimans et al. 2016) of class logits [N,K]: exp(E_x KL(p(y|x) || p(y))) over
/// `splits` equal splits; the mean and standard deviation across splits.
struct ScoreWithSpread {
    double mean = 0, std = 0;
};
ScoreWithSpread inception_score(const at::Tensor& logits, int64_t splits = 10);

/// Improved precision and recall (Kynkaanniemi et al. 2019): a sample is inside a set's manifold
/// when it lies within the distance to the k-th nearest neighbour of some point of that set.
/// Precision: fraction of fake inside the real manifold; recall: of real inside the fake one.
struct PrecisionRecall {
    double precision = 0, recall = 0;
};
PrecisionRecall precision_recall(const at::Tensor& real, const at::Tensor& fake, int64_t k = 3);

/// Distances to the k-th nearest neighbour within a set [N,D] (itself excluded), computed in
/// blocks so that N = 10^4 stays within memory.
at::Tensor kth_neighbour_distances(const at::Tensor& features, int64_t k);

/// Each query's Euclidean distance to its nearest row of `reference` ([M,D] against [N,D], any
/// shapes that flatten to those), in float32 blocks on `reference`'s device with the norms in
/// float64; [M] float64 on the CPU.
at::Tensor nearest_distances(const at::Tensor& queries, const at::Tensor& reference);

/// Training-data copying, in pixels (as Somepalli et al. 2023 and Carlini et al. 2023 look for it):
/// with d(x) the distance from x to its nearest training image and `unseen_d` the d of real images
/// the model never trained on, `copies` is the share of samples closer to a training image than
/// 99 % of the unseen images are (0.01 for real unseen images by construction), `nn_ratio` the
/// median sample d over the median unseen d (1 for real unseen images; below 1: the samples sit
/// nearer the training images than new real images do).
struct CopyStats {
    double copies = 0, nn_ratio = 0, threshold = 0;
};
CopyStats copy_stats(const at::Tensor& sample_d, const at::Tensor& unseen_d);

/// Diversity: the mean pairwise Euclidean distance between features of samples of the same label,
/// averaged over labels (labels with fewer than 2 samples are skipped). Falls as guidance narrows
/// each class.
double mean_pairwise_distance(const at::Tensor& features, const at::Tensor& labels);

/// Saturation: the fraction of pixel values at the bounds of the image range, |x| >= 0.99 of
/// `bound` (what strong guidance with static clipping does). Fashion-MNIST's black background
/// counts too: compare with real images.
double saturated_fraction(const at::Tensor& images, double bound = 1.0);

}  // namespace dlab
