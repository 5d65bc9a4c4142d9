#pragma once
// Batched sampling from a loaded model: the unrolled chain for many samples, with classifier-free
// guidance, reproducible from a seed (noise drawn on the CPU).

#include <atomic>
#include <functional>

#include "core/guidance.h"
#include "core/model_io.h"
#include "core/sampler.h"

namespace dlab {

/// What to generate.
struct GenerateRequest {
    SamplerConfig sampler;
    at::Tensor labels;          ///< [N] int64 class per sample (num_classes = null); undefined: unconditional
    int64_t count = 0;          ///< N
    double guidance = 1.0;      ///< classifier-free scale (ignored for unconditional requests)
    ClassifierGradFn classifier_grad;  ///< classifier guidance (noisy_classifier.h); empty: off
    double classifier_scale = 0.0;     ///< its scale c (0: off)
    at::Tensor classifier_labels;      ///< [N] target classes; undefined: `labels`
    uint64_t seed = 0;
    int64_t batch = 256;        ///< samples per chain
    const std::atomic<bool>* cancel = nullptr;  ///< checked before every step
    bool decode_latents = true;  ///< latent models: return decoded images (false: the latents)
};

/// Per-call hooks: step reports of each batch's chain (batch start index, step info).
using GenerateStepHook = std::function<void(int64_t start, int64_t n, const StepInfo&)>;

/// Generates N samples; returns them on the CPU in model space ([-1, 1] for images; for a latent
/// model the decoded images unless decode_latents is false). A cancelled
/// request returns the error "cancelled".
Result<at::Tensor> generate(const LoadedModel& model, const GenerateRequest& request,
                            const GenerateStepHook& on_step = {});

}  // namespace dlab
