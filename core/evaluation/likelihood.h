#pragma once
// The variational lower bound (VLB) of a diffusion model in bits per dimension (Ho et al. 2020,
// eq. 5; Nichol & Dhariwal 2021): for 8-bit images x in [-1, 1],
//   -log p(x) <= L_T + sum_{t>=1} L_t + L_0,
//   L_T = KL(q(x_T | x) || N(0, I)),  L_t = KL(q(x_{t-1} | x_t, x) || p(x_{t-1} | x_t)),
//   L_0 = -log p(x | x_1), the discretised Gaussian decoder.
// Timesteps are 0-based here as everywhere in core: index t is the (t+1)-th noisy level, index 0
// carries the decoder term and index T-1 the last KL before the prior. Each term is averaged over
// the dimensions and divided by ln 2, so the sum is bits/dim.
//
// The bound needs the model's reverse step as a Gaussian: its mean from the predicted x0 (through
// the posterior mean), its variance learned (hybrid-loss networks) or fixed. A fixed variance is
// beta~_t ("small") or beta_t ("large"); at index 0, where beta~_0 = 0, both use beta~_1 (Improved
// DDPM's choice, since a decoder of zero width gives -inf). A learned variance uses the same
// interpolation table as the trainer's hybrid loss, so the bound matches what was optimised.
//
// Every timestep costs one network evaluation per image. `strata` trades exactness for time: L_0
// is always computed, and the sum over t >= 1 is estimated from one timestep drawn uniformly from
// each of `strata` ranges of 1..T-1, weighted by its range's length (unbiased over draws). The
// ranges grow geometrically: L_t falls roughly like 1/t, so the first timesteps, which carry most
// of the bound, are taken one by one (equal ranges left a single draw ~30% low on a real model).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "core/forward/schedule.h"
#include "core/io/model_io.h"
#include "core/runtime/result.h"
#include "core/sampling/sampler.h"

namespace dlab {

/// Which variance the reverse step uses in the bound.
enum class BoundVariance {
    Model,  ///< the learned one when the network has it, else Small
    Small,  ///< beta~_t (beta~_1 at index 0)
    Large,  ///< beta_t (beta~_1 at index 0)
};
/// "model", "small", "large".
std::string to_string(BoundVariance v);
std::optional<BoundVariance> parse_bound_variance(std::string_view name);

/// The timesteps at which the bound's terms are evaluated and the weight of each in the sum.
struct BoundGrid {
    std::vector<int64_t> timesteps;  ///< ascending, always starting with 0 (the decoder)
    std::vector<double> weights;     ///< how many of the T terms each one stands for; they sum to T
    bool exact = false;              ///< every timestep, weight 1
};

/// All T timesteps (strata = 0 or >= T-1), or 0 plus one uniform draw from each of `strata`
/// geometrically growing ranges of 1..T-1. Refuses T < 2 or a negative strata count.
Result<BoundGrid> make_bound_grid(int64_t T, int64_t strata, at::Generator& gen);

/// The terms for one batch of images, all in bits/dim and float64 on the CPU.
struct BoundTerms {
    at::Tensor terms;  ///< [B, K]: L_0 at grid index 0, L_t at the other grid timesteps
    at::Tensor mse;    ///< [B, K]: mean squared error of the predicted noise (the simple loss)
    at::Tensor prior;  ///< [B]: L_T
    /// [B]: prior + sum_k weight_k terms[:, k], the bound's estimate per image.
    at::Tensor total(const BoundGrid& grid) const;
};

/// Evaluates the terms for images x0 [B, ...] in [-1, 1] (on the denoiser's device) through a
/// denoise callback. `clip_x0` clamps the predicted x0 to [-1, 1] before the posterior mean, as
/// the samplers do. Fresh noise for each timestep is drawn on the CPU from `gen`.
BoundTerms bound_terms(const Denoiser& denoise, const NoiseSchedule& schedule, const at::Tensor& x0,
                       const BoundGrid& grid, BoundVariance variance, bool clip_x0, at::Generator& gen);

/// Settings of a whole-model evaluation.
struct BoundOptions {
    int64_t strata = 0;              ///< 0: all T timesteps (exact); else the stratified estimate
    BoundVariance variance = BoundVariance::Model;
    bool clip_x0 = true;
    double guidance = 1.0;           ///< classifier-free scale with the images' labels (1: conditional)
    bool unconditional = false;      ///< the null class for every image (the model's p(x))
    int64_t batch = 256;
    uint64_t seed = 0;
    /// model_bound: (steps done, steps in all) after every step; may be empty.
    std::function<void(int64_t, int64_t)> on_progress;
    const std::atomic<bool>* cancel = nullptr;
};

/// The bound of a model over a set of images, with its parts.
struct BoundReport {
    int64_t count = 0;
    double bpd = 0;        ///< mean bound, bits/dim
    double bpd_se = 0;     ///< its standard error over images
    double prior = 0;      ///< mean L_T
    double decoder = 0;    ///< mean L_0
    double diffusion = 0;  ///< mean weighted sum of L_t, t >= 1
    BoundGrid grid;
    std::vector<double> term_mean;  ///< per grid timestep, mean over images (bits/dim)
    std::vector<double> mse_mean;   ///< per grid timestep, mean noise-prediction MSE
    std::string variance;           ///< the variance used ("learned", "small", "large")
    std::string conditioning;       ///< "unconditional", "conditional", "guided s = ..."
    double seconds = 0;
};

/// The bound of a model evaluated a step at a time (one timestep of one batch per step), so that a
/// GUI job can interleave it with other work and draw the per-timestep curve as it grows. The
/// timesteps are visited in the grid's order, each over every batch before the next, so report()
/// holds final values for the timesteps done so far. The model must outlive the run.
class BoundRun {
public:
    /// Checks everything before any work: the model is a pixel-space image model, the images are
    /// [N, C, H, W] as its config says (CPU, in [-1, 1]), one label in range per image for a
    /// class-conditional model (unless `unconditional`), the batch fits the memory budget.
    static Result<std::unique_ptr<BoundRun>> create(const LoadedModel& model, const at::Tensor& images,
                                                    const at::Tensor& labels, const BoundOptions& options);
    ~BoundRun();
    bool done() const;
    /// One timestep of one batch. Throws on LibTorch errors and on non-finite terms.
    void step();
    int64_t steps_done() const;
    int64_t total_steps() const;
    /// Grid timesteps finished over every image so far.
    int64_t timesteps_done() const;
    /// term_mean / mse_mean for the timesteps done so far (a prefix of grid.timesteps); the totals
    /// (bpd, its standard error, the parts) once done().
    BoundReport report() const;

private:
    struct State;
    explicit BoundRun(std::unique_ptr<State> state);
    std::unique_ptr<State> s_;
};

/// The bound of a pixel-space image model over `images` (BoundRun::create's checks), driven to
/// the end; non-finite terms, out of memory and "cancelled" are errors with a message.
Result<BoundReport> model_bound(const LoadedModel& model, const at::Tensor& images, const at::Tensor& labels,
                                const BoundOptions& options);

}  // namespace dlab
