#include "core/evaluation/metrics.h"

#include <cmath>
#include <vector>

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

ScoreWithSpread inception_score(const at::Tensor& logits, int64_t splits) {
    const at::Tensor logp = at::log_softmax(logits.to(at::kCPU, at::kDouble), 1);
    const int64_t N = logp.size(0);
    splits = std::max<int64_t>(1, std::min(splits, N));
    std::vector<double> scores;
    for (int64_t s = 0; s < splits; ++s) {
        const int64_t a = s * N / splits, b = (s + 1) * N / splits;
        const at::Tensor part = logp.narrow(0, a, b - a);
        const at::Tensor log_py = at::logsumexp(part, 0) - std::log(double(b - a));  // log of the marginal
        const double kl = (part.exp() * (part - log_py.unsqueeze(0))).sum(1).mean().item<double>();
        scores.push_back(std::exp(kl));
    }
    ScoreWithSpread r;
    for (double x : scores) r.mean += x / double(scores.size());
    for (double x : scores) r.std += (x - r.mean) * (x - r.mean) / double(scores.size());
    r.std = std::sqrt(r.std);
    return r;
}

namespace {

// Squared distances between rows of a [n,D] and b [m,D] (float64).
at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& b) {
    const at::Tensor an = a.pow(2).sum(1, true), bn = b.pow(2).sum(1, true);
    return (an - 2.0 * at::matmul(a, b.t()) + bn.t()).clamp_min(0);
}

constexpr int64_t kBlock = 1024;

// For each row of `query`: is it within radius[j] of some row j of `set`?
at::Tensor inside_manifold(const at::Tensor& query, const at::Tensor& set, const at::Tensor& radius) {
    std::vector<at::Tensor> parts;
    const at::Tensor r2 = radius.pow(2).unsqueeze(0);
    for (int64_t i = 0; i < query.size(0); i += kBlock) {
        const at::Tensor q = query.narrow(0, i, std::min(kBlock, query.size(0) - i));
        parts.push_back((squared_distances(q, set) <= r2).any(1));
    }
    return at::cat(parts);
}

}  // namespace

at::Tensor kth_neighbour_distances(const at::Tensor& features, int64_t k) {
    const at::Tensor f = features.to(at::kCPU, at::kDouble).flatten(1);
    const int64_t N = f.size(0);
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < N; i += kBlock) {
        const at::Tensor q = f.narrow(0, i, std::min(kBlock, N - i));
        // k + 1 smallest: the first is the point itself (distance 0).
        const at::Tensor d2 = squared_distances(q, f);
        parts.push_back(std::get<0>(at::topk(d2, std::min(k + 1, N), 1, /*largest=*/false)).select(1, std::min(k, N - 1)));
    }
    return at::cat(parts).sqrt();
}

at::Tensor nearest_distances(const at::Tensor& queries, const at::Tensor& reference) {
    TORCH_CHECK(queries.dim() >= 1 && reference.dim() >= 1 && reference.size(0) > 0, "nearest_distances: empty reference");
    const at::Tensor r = reference.flatten(1).to(at::kFloat);
    const at::Tensor q_all = queries.flatten(1);
    TORCH_CHECK(q_all.size(1) == r.size(1), "nearest_distances: queries and reference differ in dimension");
    const at::Tensor rn = r.to(at::kDouble).pow(2).sum(1).unsqueeze(0);
    const int64_t M = q_all.size(0);
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < M; i += kBlock) {
        const at::Tensor q = q_all.narrow(0, i, std::min(kBlock, M - i)).to(r.device(), at::kFloat);
        const at::Tensor qn = q.to(at::kDouble).pow(2).sum(1, true);
        // The smallest ||q||^2 - 2 q.r + ||r||^2 over the reference (the cross term in float32).
        const at::Tensor d2 = qn - 2.0 * at::matmul(q, r.t()).to(at::kDouble) + rn;
        parts.push_back(std::get<0>(d2.min(1)).clamp_min(0).sqrt().to(at::kCPU));
    }
    return M > 0 ? at::cat(parts) : at::zeros({0}, at::kDouble);
}

CopyStats copy_stats(const at::Tensor& sample_d, const at::Tensor& unseen_d) {
    TORCH_CHECK(sample_d.numel() > 0 && unseen_d.numel() > 0, "copy_stats: empty distance sets");
    const at::Tensor s = sample_d.to(at::kCPU, at::kDouble).flatten(), u = unseen_d.to(at::kCPU, at::kDouble).flatten();
    CopyStats c;
    c.threshold = at::quantile(u, 0.01).item<double>();
    c.copies = (s < c.threshold).to(at::kDouble).mean().item<double>();
    const double um = at::quantile(u, 0.5).item<double>();
    c.nn_ratio = um > 0 ? at::quantile(s, 0.5).item<double>() / um : 0.0;
    return c;
}

PrecisionRecall precision_recall(const at::Tensor& real, const at::Tensor& fake, int64_t k) {
    const at::Tensor r = real.to(at::kCPU, at::kDouble).flatten(1), f = fake.to(at::kCPU, at::kDouble).flatten(1);
    PrecisionRecall pr;
    pr.precision = inside_manifold(f, r, kth_neighbour_distances(r, k)).to(at::kDouble).mean().item<double>();
    pr.recall = inside_manifold(r, f, kth_neighbour_distances(f, k)).to(at::kDouble).mean().item<double>();
    return pr;
}

double saturated_fraction(const at::Tensor& images, double bound) {
    if (images.numel() == 0) return 0.0;
    return (images.abs() >= 0.99 * bound).to(at::kFloat).mean().item<double>();
}

double mean_pairwise_distance(const at::Tensor& features, const at::Tensor& labels) {
    const at::Tensor f = features.to(at::kCPU, at::kDouble).flatten(1);
    const at::Tensor l = labels.to(at::kCPU, at::kLong);
    const at::Tensor classes = std::get<0>(at::_unique(l));
    double total = 0;
    int64_t used = 0;
    for (int64_t i = 0; i < classes.size(0); ++i) {
        const at::Tensor g = f.index({l == classes[i]});
        const int64_t n = g.size(0);
        if (n < 2) continue;
        double sum = 0;
        for (int64_t a = 0; a < n; a += kBlock) {
            const at::Tensor q = g.narrow(0, a, std::min(kBlock, n - a));
            sum += squared_distances(q, g).sqrt().sum().item<double>();
        }
        total += sum / double(n * (n - 1));  // the diagonal is 0
        ++used;
    }
    return used > 0 ? total / double(used) : 0.0;
}

}  // namespace dlab
