#pragma once
// core/sampling/ -- the reverse process. One sampler algorithm per file (DDPM ancestral, DDIM,
// DPM-Solver++(2M)) behind the Sampler interface; a sampler only sees a denoise callback, never a
// network. `generate.h` unrolls chains for many samples at once (the CLI's sample/eval/sweep and
// the lab's batch jobs), either to the end or one step at a time.
//
// Samplers of the reverse process. A sampler never sees the network: it receives a denoise
// callback that returns (x0, eps) for x_t at an integer timestep t. One algorithm per file:
// sampler_ddpm.cpp, sampler_ddim.cpp, sampler_dpmpp.cpp.

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

namespace dlab {

enum class SamplerKind { Ddpm, Ddim, DpmSolverPP2M };
/// "ddpm", "ddim", "dpmpp2m".
std::string to_string(SamplerKind kind);
std::optional<SamplerKind> parse_sampler_kind(std::string_view name);

/// How a subsequence of the T training timesteps is chosen (diffusers' names).
enum class TimestepSpacing { Leading, Trailing, Linspace };
std::string to_string(TimestepSpacing spacing);
std::optional<TimestepSpacing> parse_timestep_spacing(std::string_view name);

/// `steps` timesteps out of T, in descending order (MATH.md: leading, trailing, linspace).
std::vector<int64_t> make_timesteps(int64_t T, int64_t steps, TimestepSpacing spacing);
/// The index of the first of `timesteps` (descending) at or below t, else the last index: where a
/// chain entering at noise level t starts (a fork, a start from noised real data).
int64_t first_step_at_or_below(const std::vector<int64_t>& timesteps, int64_t t);

/// Settings of a sampler.
struct SamplerConfig {
    SamplerKind kind = SamplerKind::Ddim;
    int64_t steps = 50;
    double eta = 0.0;                        ///< DDIM: 0 deterministic, 1 ~ DDPM
    TimestepSpacing spacing = TimestepSpacing::Trailing;
    bool clip_x0 = true;                     ///< clamp predicted x0 to [-clip_value, clip_value]
    double clip_value = 1.0;
    /// Dynamic thresholding (Imagen, Saharia et al. 2022), with clip_x0: per sample, s = this
    /// percentile of |x0|, at least clip_value; x0 is clamped to [-s, s] and scaled by clip_value / s,
    /// so a strongly guided x0 is pulled back inside the range instead of saturating at its bounds.
    /// 0: off (static clipping); else in (0, 1], e.g. 0.995.
    double dynamic_threshold = 0.0;
};

/// The denoise callback: (x_t, t) -> predicted x0 and eps, same shape as x_t.
using Denoiser = std::function<X0Eps(const at::Tensor& x_t, int64_t t)>;

/// What one step produced.
struct StepOutput {
    at::Tensor x_prev;  ///< the next, less noisy sample (x_0 itself after the last step)
    at::Tensor x0;      ///< predicted x0 at this step (after clipping)
    at::Tensor eps;     ///< predicted noise at this step (consistent with the clipped x0)
};

/// A reverse-process sampler over a fixed subsequence of timesteps.
class Sampler {
public:
    Sampler(const NoiseSchedule& schedule, const SamplerConfig& config);
    virtual ~Sampler() = default;

    const SamplerConfig& config() const { return config_; }
    /// The timesteps visited, descending; step i starts at timesteps()[i].
    const std::vector<int64_t>& timesteps() const { return timesteps_; }
    int64_t num_steps() const { return static_cast<int64_t>(timesteps_.size()); }

    /// Step i: from x at timesteps()[i] to timesteps()[i+1] (to x_0 at the last step). Fresh noise
    /// is drawn on the CPU from `gen` so that a seed gives the same chain on every device.
    virtual StepOutput step(int64_t i, const at::Tensor& x, const Denoiser& denoise,
                            at::Generator& gen) = 0;
    /// Forgets multistep history (a forked chain restarts from a recorded step).
    virtual void reset() {}
    /// Whether the sampler applies classifier guidance to its posterior mean itself (DDPM);
    /// otherwise predict() folds it into eps (the score correction).
    virtual bool guides_mean() const { return false; }

protected:
    /// abar at timestep t; abar_{-1} = 1.
    double abar(int64_t t) const;
    /// The timestep after step i, or -1 after the last.
    int64_t next_t(int64_t i) const;
    /// Calls the denoiser and clips x0 (recomputing eps from the clipped x0) when configured.
    X0Eps predict(const at::Tensor& x, int64_t t, const Denoiser& denoise) const;
    /// Standard normal noise like x, drawn on the CPU from gen.
    static at::Tensor noise_like(const at::Tensor& x, at::Generator& gen);

    NoiseSchedule schedule_;
    SamplerConfig config_;
    std::vector<int64_t> timesteps_;
};

/// Builds a sampler, or says which setting is out of range.
Result<std::unique_ptr<Sampler>> make_sampler(const NoiseSchedule& schedule,
                                              const SamplerConfig& config);

/// What the chain reports after each step (for the step-by-step view).
struct StepInfo {
    int64_t index = 0;   ///< step number, 0-based
    int64_t total = 0;   ///< number of steps
    int64_t t = 0;       ///< timestep at the start of the step
    at::Tensor x_t;      ///< the sample entering the step
    at::Tensor x0;       ///< predicted x0
    at::Tensor eps;      ///< predicted noise
    at::Tensor x_next;   ///< the sample leaving the step
};

/// Per-call hooks of a chain: a step callback and a cancel flag checked before every step.
struct ChainHooks {
    std::function<void(const StepInfo&)> on_step;
    const std::atomic<bool>* cancel = nullptr;
};

/// The end of a chain.
struct ChainResult {
    at::Tensor x;             ///< x_0, or the last sample reached when cancelled
    bool cancelled = false;
    int64_t steps_done = 0;
};

/// Runs steps [start, num_steps) from x (x_T when start = 0) under no-grad.
ChainResult run_chain(Sampler& sampler, at::Tensor x, const Denoiser& denoise, at::Generator& gen,
                      const ChainHooks& hooks = {}, int64_t start = 0);

/// A CPU generator seeded for reproducible chains.
at::Generator make_generator(uint64_t seed);

}  // namespace dlab
