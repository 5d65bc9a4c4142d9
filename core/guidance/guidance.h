#pragma once
// core/guidance/ -- steering a chain towards a class. Classifier-free guidance mixes the conditional
// and unconditional outputs with a live scale (GuidanceControl); classifier guidance adds the
// gradient of a noise-aware classifier p(y | x_t, t) (`noisy_classifier.h`) to the posterior mean
// (DDPM) or to eps (DDIM, DPM-Solver++). Both wrap the denoise callback.
//
// Guidance wraps the denoise callback. Classifier-free guidance (Ho & Salimans 2022):
// out = out_u + s (out_c - out_u); s = 0 unconditional, s = 1 conditional, s > 1 guided. The scale
// lives in a GuidanceControl that another thread may change between two steps of a running chain.

#include <atomic>
#include <functional>
#include <limits>
#include <memory>

#include <ATen/core/Tensor.h>

#include "core/sampling/sampler.h"
#include "core/forward/schedule.h"

namespace dlab {

/// The network as a function: (x, t [B], labels [B] or undefined) -> model output.
using ModelFn =
    std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels)>;

/// The model output for (x_t, t) with guidance already applied.
using RawDenoiser = std::function<at::Tensor(const at::Tensor& x, int64_t t)>;

/// d/dx log p(y | x_t, t) of a noise-aware classifier, for x [B,...] at model timestep t and target
/// labels [B] (noisy_classifier.h builds one).
using ClassifierGradFn = std::function<at::Tensor(const at::Tensor& x, int64_t t, const at::Tensor& labels)>;

/// Live guidance settings, safe to change from another thread while a chain runs.
class GuidanceControl {
public:
    explicit GuidanceControl(double scale = 1.0, double classifier_scale = 0.0)
        : scale_(scale), classifier_scale_(classifier_scale) {}
    void set_scale(double s) { scale_.store(s); }
    double scale() const { return scale_.load(); }
    /// Classifier-guidance scale (0: off).
    void set_classifier_scale(double s) { classifier_scale_.store(s); }
    double classifier_scale() const { return classifier_scale_.load(); }
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
    std::atomic<double> classifier_scale_;
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

/// Called with the scaled classifier gradient of each guided step (the GUI's heat map); optional.
using ClassifierObserver = std::function<void(int64_t t, double scale, const at::Tensor& grad)>;

/// Classifier guidance (Dhariwal & Nichol 2021) around a denoiser: when the control's classifier
/// scale c is not 0, attaches c * grad log p(labels | x_t) to the prediction (X0Eps::guidance_grad)
/// for the sampler to apply. The gradient is computed only on guided steps, with autograd on.
Denoiser add_classifier_guidance(Denoiser base, ClassifierGradFn grad, at::Tensor labels,
                                 std::shared_ptr<const GuidanceControl> control,
                                 ClassifierObserver observer = nullptr);

}  // namespace dlab
