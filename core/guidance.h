#pragma once
// Guidance wraps the denoise callback. Classifier-free guidance (Ho & Salimans 2022):
// out = out_u + s (out_c - out_u); s = 0 unconditional, s = 1 conditional, s > 1 guided. The scale
// lives in a GuidanceControl that another thread may change between two steps of a running chain.

#include <atomic>
#include <functional>
#include <limits>
#include <memory>

#include <ATen/core/Tensor.h>

#include "core/sampler.h"
#include "core/schedule.h"

namespace dlab {

/// The network as a function: (x, t [B], labels [B] or undefined) -> model output.
using ModelFn =
    std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels)>;

/// The model output for (x_t, t) with guidance already applied.
using RawDenoiser = std::function<at::Tensor(const at::Tensor& x, int64_t t)>;

/// Live guidance settings, safe to change from another thread while a chain runs.
class GuidanceControl {
public:
    explicit GuidanceControl(double scale = 1.0) : scale_(scale) {}
    void set_scale(double s) { scale_.store(s); }
    double scale() const { return scale_.load(); }
    /// Guidance applies only for t in [lo, hi]; outside, the plain conditional output (s = 1).
    void set_interval(int64_t lo, int64_t hi) {
        lo_.store(lo);
        hi_.store(hi);
    }
    void clear_interval() { set_interval(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()); }
    /// The scale in force at timestep t.
    double scale_at(int64_t t) const { return (t >= lo_.load() && t <= hi_.load()) ? scale() : 1.0; }

private:
    std::atomic<double> scale_;
    std::atomic<int64_t> lo_{std::numeric_limits<int64_t>::min()};
    std::atomic<int64_t> hi_{std::numeric_limits<int64_t>::max()};
};

/// Called with the conditional and unconditional outputs of a guided step (for the GUI's view of
/// the guidance direction); optional.
using GuidanceObserver = std::function<void(int64_t t, double scale, const at::Tensor& out_c,
                                            const at::Tensor& out_u)>;

/// Classifier-free guidance around `model`: one batched forward pass over [x; x] with
/// [labels; null] when 0 < s != 1, a single pass otherwise. `null_label` is the null class.
RawDenoiser classifier_free_guidance(ModelFn model, at::Tensor labels, int64_t null_label,
                                     std::shared_ptr<const GuidanceControl> control,
                                     GuidanceObserver observer = nullptr);

/// The plain model (no guidance) as a RawDenoiser; labels may be undefined.
RawDenoiser plain_denoiser(ModelFn model, at::Tensor labels);

/// Turns model outputs of a prediction type into the (x0, eps) pair the samplers use.
Denoiser make_denoiser(RawDenoiser raw, const NoiseSchedule& schedule, PredictionType type);

}  // namespace dlab
