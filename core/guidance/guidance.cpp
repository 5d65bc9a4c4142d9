#include "core/guidance/guidance.h"

#include <ATen/ATen.h>

namespace dlab {

namespace {

at::Tensor timesteps_for(const at::Tensor& x, int64_t t) {
    return at::full({x.size(0)}, t, at::TensorOptions().dtype(at::kLong).device(x.device()));
}

}  // namespace

RawDenoiser plain_denoiser(ModelFn model, at::Tensor labels) {
    return [model = std::move(model), labels = std::move(labels)](const at::Tensor& x, int64_t t) {
        return model(x, timesteps_for(x, t), labels);
    };
}

RawDenoiser classifier_free_guidance(ModelFn model, at::Tensor labels, int64_t null_label,
                                     std::shared_ptr<const GuidanceControl> control,
                                     GuidanceObserver observer) {
    return [model = std::move(model), labels = std::move(labels), null_label,
            control = std::move(control), observer = std::move(observer)](const at::Tensor& x,
                                                                          int64_t t) {
        const double s = control->scale_at(t);  // read once: a live change applies next step
        const at::Tensor y = labels.to(x.device());
        const at::Tensor null = at::full_like(y, null_label);
        if (s == 1.0 && !observer) return model(x, timesteps_for(x, t), y);
        if (s == 0.0 && !observer) return model(x, timesteps_for(x, t), null);
        // Conditional and unconditional halves in one batched forward pass.
        const at::Tensor xx = at::cat({x, x}, 0);
        const at::Tensor out = model(xx, timesteps_for(xx, t), at::cat({y, null}, 0));
        const int64_t B = x.size(0);
        const at::Tensor out_c = out.narrow(0, 0, B), out_u = out.narrow(0, B, B);
        if (observer) observer(t, s, out_c, out_u);
        const int64_t C = x.size(1);
        if (out.size(1) == 2 * C) {
            // A learned variance is not guided: the conditional half's variance is kept.
            const at::Tensor mean_u = out_u.narrow(1, 0, C), mean_c = out_c.narrow(1, 0, C);
            return at::cat({mean_u + s * (mean_c - mean_u), out_c.narrow(1, C, C)}, 1);
        }
        return out_u + s * (out_c - out_u);
    };
}

Denoiser make_denoiser(RawDenoiser raw, const NoiseSchedule& schedule, PredictionType type) {
    return [raw = std::move(raw), schedule, type](const at::Tensor& x, int64_t t) {
        const at::Tensor out = raw(x, t);
        const int64_t C = x.size(1);
        // One timestep for the batch: scalar coefficients, no host-to-device copy (which would make
        // the host wait for the network at every step, so the next launches could not overlap it).
        X0Eps p = schedule.split_prediction(type, out.narrow(1, 0, C), x, t);
        if (out.size(1) == 2 * C) p.var_v = out.narrow(1, C, C);
        return p;
    };
}

Denoiser add_classifier_guidance(Denoiser base, ClassifierGradFn grad, at::Tensor labels,
                                 std::shared_ptr<const GuidanceControl> control, ClassifierObserver observer) {
    return [base = std::move(base), grad = std::move(grad), labels = std::move(labels),
            control = std::move(control), observer = std::move(observer)](const at::Tensor& x, int64_t t) {
        X0Eps p = base(x, t);
        const double c = control->classifier_scale();  // read once: a live change applies next step
        if (c != 0.0) {
            p.guidance_grad = c * grad(x, t, labels);
            if (observer) observer(t, c, p.guidance_grad);
        }
        return p;
    };
}

}  // namespace dlab
