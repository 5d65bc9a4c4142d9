#pragma once
// Batched sampling from a loaded model: the unrolled chain for many samples, with classifier-free
// guidance, reproducible from a seed (noise drawn on the CPU).

#include <atomic>
#include <functional>
#include <memory>

#include "core/guidance/guidance.h"
#include "core/io/model_io.h"
#include "core/sampling/sampler.h"

namespace dlab {

class GraphedModel;

/// What to generate.
struct GenerateRequest {
    SamplerConfig sampler;
    at::Tensor labels;          ///< [N] int64 class per sample (num_classes = null); undefined: unconditional
    /// Text-to-image models: the prompts' token states [P, L, D] and validity [P, L] (clip.h's
    /// encode_prompts); `labels` then pick prompt i + 1 per sample, 0 being the null prompt. A
    /// defined negative prompt [1, L, D] takes the null prompt's place in guidance.
    at::Tensor prompt_states, prompt_valid, negative_states, negative_valid;
    int64_t count = 0;          ///< N
    double guidance = 1.0;      ///< classifier-free scale (ignored for unconditional requests)
    ClassifierGradFn classifier_grad;  ///< classifier guidance (noisy_classifier.h); empty: off
    double classifier_scale = 0.0;     ///< its scale c (0: off)
    at::Tensor classifier_labels;      ///< [N] target classes; undefined: `labels`
    uint64_t seed = 0;
    int64_t batch = 256;        ///< samples per chain
    const std::atomic<bool>* cancel = nullptr;  ///< checked before every step
    bool decode_latents = true;  ///< latent models: return decoded images (false: the latents)
    at::Tensor noise;            ///< the starting noise x_T [N, ...] (undefined: drawn from `seed`)
    /// Each chain starts at this sampler step (0: at x_T), `noise` being the samples at that step's
    /// timestep (e.g. real data noised by q(x_t | x_0): eval --from-real); 0 <= start_step < steps.
    int64_t start_step = 0;
    bool cuda_graphs = true;     ///< replay the network as CUDA graphs on CUDA (graphed_model.h)
    /// With cuda_graphs (and not bf16): replay these graphs, captured by earlier requests of the same
    /// thread for the same network, instead of capturing a set of its own on the first step (three
    /// eager warm-up passes and the capture, per request). Another network's graphs are an error.
    std::shared_ptr<GraphedModel> graphs;
    bool bf16 = false;           ///< bf16 autocast of the network (CUDA only; runtime.h)
    /// Sharding over ranks: only the batches b (of `batch` samples, counted from 0) with
    /// b % shards == shard are sampled, each exactly as an unsharded run samples it; the result
    /// holds those batches in order. gather_shards() puts the ranks' results back together.
    int64_t shard = 0, shards = 1;
};

/// The sizes of the batches a shard samples (all N when shards == 1).
std::vector<int64_t> shard_batch_sizes(int64_t count, int64_t batch, int64_t shard, int64_t shards);
/// Puts the results of every shard (in shard order, each padded to the same number of rows)
/// back into the order of an unsharded run of `count` samples.
at::Tensor assemble_shards(const std::vector<at::Tensor>& padded, int64_t count, int64_t batch);

/// Spherical interpolation between two noise tensors (Shoemake 1985), the path between two
/// starting noises that keeps a Gaussian sample's norm: sin((1-t)w)/sin(w) a + sin(tw)/sin(w) b, w the
/// angle between a and b (flattened); linear when they are (anti)parallel.
at::Tensor slerp(const at::Tensor& a, const at::Tensor& b, double t);

/// Whether clean Fashion-MNIST images can start this model's chains (sample --start-image, eval
/// --from-real, the Reverse view's start from a test image): a model of 28x28 grey images, or a
/// latent model whose autoencoder takes them (text-to-image ones too: the prompt conditions the rest
/// of the chain). The message says what it takes instead.
Status check_starts_from_fashion_mnist(const LoadedModel& model);

/// Starts the request's chains from clean samples x0 [N, ...] in the model's space (a latent model:
/// their latents) noised by q(x_t | x_0) with `eps` (x0's shape) to the sampler's first timestep at
/// or below t (else its last), as SDEdit does: sets req.noise and req.start_step from req.sampler's
/// steps and spacing on `schedule`; returns that timestep. t outside 0..T-1 or a shape mismatch: an error.
Result<int64_t> start_from_clean(GenerateRequest& req, const NoiseSchedule& schedule, const at::Tensor& x0,
                                 const at::Tensor& eps, int64_t t);

/// start_from_clean() for `n` chains of one clean image [1, C, H, W] in pixels (a latent model's
/// autoencoder encodes it first, on the model's device), each chain with its own noise drawn from
/// `seed` (the same seed: the same variations, whatever req's other settings).
Result<int64_t> start_from_image(GenerateRequest& req, const LoadedModel& model, const NoiseSchedule& schedule,
                                 const at::Tensor& image, int64_t n, uint64_t seed, int64_t t);

/// Per-call hooks: step reports of each batch's chain (batch start index, step info).
using GenerateStepHook = std::function<void(int64_t start, int64_t n, const StepInfo&)>;

/// A generation run advanced one sampler step at a time, so that a job can interleave it with
/// other work (the lab's batch grids and sweeps); generate() is such a run driven to the end. The
/// batches are chained one after the other; each batch's fresh noise comes from its own generator,
/// so results do not depend on how the steps are scheduled. The model must outlive the run.
class GenerateRun {
public:
    /// Checks the request (sampler settings, count, batch) and draws the starting noise.
    static Result<std::unique_ptr<GenerateRun>> create(const LoadedModel& model, const GenerateRequest& request);
    ~GenerateRun();

    /// Whether every batch has been sampled (and decoded).
    bool done() const;
    /// One sampler step of the current batch (a latent batch is decoded after its last step);
    /// `on_step` gets (batch start, batch size, the step's report). Throws on LibTorch errors and
    /// when a finished batch holds NaN or Inf.
    void step(const GenerateStepHook& on_step = {});
    /// Chain steps done and in all, over every batch.
    int64_t steps_done() const;
    int64_t total_steps() const;
    /// The N samples on the CPU (after done()).
    at::Tensor result() const;

private:
    struct State;
    explicit GenerateRun(std::unique_ptr<State> state);
    std::unique_ptr<State> s_;
};

/// Generates N samples; returns them on the CPU in model space ([-1, 1] for images; for a latent
/// model the decoded images unless decode_latents is false). A cancelled
/// request returns the error "cancelled"; non-finite samples (a damaged or diverged model), a
/// batch beyond the memory budget and LibTorch failures are errors with a message.
Result<at::Tensor> generate(const LoadedModel& model, const GenerateRequest& request,
                            const GenerateStepHook& on_step = {});

}  // namespace dlab
