#pragma once
// core/forward/ -- the forward process of the lecture. Noise schedules (linear, cosine,
// scaled-linear, sigmoid, zero terminal SNR) give beta_t, alpha_t, abar_t and SNR(t); from them
// q(x_t | x_0) noises an image in one jump and the posterior q(x_{t-1} | x_t, x_0) is what every
// reverse step aims at. Samplers, the trainer and the views all read their coefficients here.
//
// Noise schedules of discrete-time diffusion (../shared/MATH.md): betas, alphas, abar, SNR and the
// coefficients of the forward process q(x_t | x_0) and the posterior q(x_{t-1} | x_t, x_0).
// Everything is computed in float64; forward-process helpers cast to the input's dtype.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/runtime/result.h"

namespace dlab {

/// The shape of beta_t over t.
enum class ScheduleKind { Linear, Cosine, ScaledLinear, Sigmoid };

/// "linear", "cosine", "scaled-linear", "sigmoid".
std::string to_string(ScheduleKind kind);
/// Parses a schedule name (also accepts "scaled_linear" and "squaredcos_cap_v2").
std::optional<ScheduleKind> parse_schedule_kind(std::string_view name);
/// Every schedule kind, in menu order.
const std::vector<ScheduleKind>& all_schedule_kinds();

/// What the network predicts.
enum class PredictionType { Eps, X0, V };
/// "eps", "x0", "v".
std::string to_string(PredictionType type);
/// Parses "eps" (also "epsilon"), "x0" (also "sample"), "v" (also "v_prediction").
std::optional<PredictionType> parse_prediction_type(std::string_view name);

/// The model's output turned into both parametrisations.
struct X0Eps {
    at::Tensor x0;   ///< predicted clean sample
    at::Tensor eps;  ///< predicted noise
    /// A network with a learned variance (hybrid loss): its extra output v in [-1, 1] per element;
    /// undefined for the fixed variances. The DDPM sampler uses it (losses.h).
    at::Tensor var_v;
    /// Classifier guidance: scale * d/dx_t log p(y | x_t) (undefined: none). DDPM shifts its
    /// posterior mean by variance * this; the other samplers correct eps by -sqrt(1 - abar) * this.
    at::Tensor guidance_grad;
};

/// How a schedule is built; saved beside every checkpoint.
struct ScheduleConfig {
    ScheduleKind kind = ScheduleKind::Cosine;
    int64_t timesteps = 1000;      ///< T
    double beta_start = 1e-4;      ///< linear/sigmoid: beta_0; scaled-linear: 8.5e-4 if left at 1e-4
    double beta_end = 0.02;        ///< linear/sigmoid: beta_{T-1}; scaled-linear: 1.2e-2 if 0.02
    double cosine_s = 0.008;       ///< cosine offset s
    double max_beta = 0.999;       ///< cosine clipping of beta
    bool rescale_to_T = false;     ///< improved-diffusion: scale linear betas by 1000/T
    bool zero_terminal_snr = false;///< Lin et al. 2024, Alg. 1 (needs v-prediction to train)
    /// SNR(t) multiplied by this at every t (log SNR shifted by its log, as Hoogeboom et al. 2023
    /// shift the cosine schedule by resolution): above 1 keeps more signal at every step, for data
    /// with less redundancy than pixels (small latents); 1 leaves the schedule as it is.
    double snr_shift = 1.0;
};
/// The range ScheduleConfig::snr_shift is checked against wherever it is read.
constexpr double kMinSnrShift = 1e-3, kMaxSnrShift = 1e3;

/// A noise schedule with every derived quantity precomputed as float64 tensors of length T.
class NoiseSchedule {
public:
    /// Builds the schedule, or says which setting is out of range.
    static Result<NoiseSchedule> create(const ScheduleConfig& config);

    const ScheduleConfig& config() const { return config_; }
    int64_t timesteps() const { return config_.timesteps; }

    const at::Tensor& betas() const { return betas_; }             ///< beta_t
    const at::Tensor& alphas() const { return alphas_; }           ///< 1 - beta_t
    const at::Tensor& alpha_bars() const { return alpha_bars_; }   ///< prod_{s<=t} alpha_s
    const at::Tensor& alpha_bars_prev() const { return alpha_bars_prev_; }  ///< abar_{t-1}, abar_{-1}=1
    const at::Tensor& snr() const { return snr_; }                 ///< abar / (1 - abar)
    const at::Tensor& log_snr() const { return log_snr_; }         ///< lambda_t = log(sqrt(abar)/sqrt(1-abar))
    const at::Tensor& posterior_variance() const { return posterior_variance_; }  ///< beta~_t
    /// log beta~_t, with log beta~_1 at t = 0 (where beta~_0 = 0), as in Improved DDPM.
    const at::Tensor& posterior_log_variance_clipped() const { return posterior_log_var_; }
    const at::Tensor& posterior_mean_coef_x0() const { return coef_x0_; }  ///< on x_0
    const at::Tensor& posterior_mean_coef_xt() const { return coef_xt_; }  ///< on x_t

    // ---- Forward process and conversions. `t` is an int64 tensor [B] (on any device); results
    // have the dtype and device of the image tensors, whose first dimension is B.

    /// A sample of q(x_t | x_0): sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.
    at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& eps, const at::Tensor& t) const;
    /// Mean of the posterior q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7).
    at::Tensor posterior_mean(const at::Tensor& x0, const at::Tensor& xt, const at::Tensor& t) const;
    /// beta~_t broadcast to the shape [B,1,...] of `like`.
    at::Tensor posterior_variance_like(const at::Tensor& t, const at::Tensor& like) const;
    /// x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar).
    at::Tensor x0_from_eps(const at::Tensor& xt, const at::Tensor& eps, const at::Tensor& t) const;
    /// eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar).
    at::Tensor eps_from_x0(const at::Tensor& xt, const at::Tensor& x0, const at::Tensor& t) const;
    /// v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022).
    at::Tensor v_from(const at::Tensor& x0, const at::Tensor& eps, const at::Tensor& t) const;
    /// x_0 = sqrt(abar) x_t - sqrt(1 - abar) v.
    at::Tensor x0_from_v(const at::Tensor& xt, const at::Tensor& v, const at::Tensor& t) const;
    /// eps = sqrt(1 - abar) x_t + sqrt(abar) v.
    at::Tensor eps_from_v(const at::Tensor& xt, const at::Tensor& v, const at::Tensor& t) const;
    /// Interprets a model output of the given prediction type as (x0, eps).
    X0Eps split_prediction(PredictionType type, const at::Tensor& model_out, const at::Tensor& xt,
                           const at::Tensor& t) const;
    /// The same for one timestep t shared by the whole batch (a sampler's step): the coefficients
    /// are scalars, so nothing is copied to the device and the host never waits for it.
    X0Eps split_prediction(PredictionType type, const at::Tensor& model_out, const at::Tensor& xt,
                           int64_t t) const;
    /// Gathers table[t] and shapes it [B,1,...] in the dtype and device of `like`.
    static at::Tensor gather(const at::Tensor& table, const at::Tensor& t, const at::Tensor& like);

    double beta(int64_t t) const;
    double alpha_bar(int64_t t) const;
    /// abar_{t-1}, with abar_{-1} = 1.
    double alpha_bar_prev(int64_t t) const;

private:
    explicit NoiseSchedule(ScheduleConfig config) : config_(config) {}
    void derive_from_betas(at::Tensor betas);

    ScheduleConfig config_;
    at::Tensor betas_, alphas_, alpha_bars_, alpha_bars_prev_, snr_, log_snr_;
    at::Tensor posterior_variance_, posterior_log_var_, coef_x0_, coef_xt_;
    at::Tensor sqrt_abar_, sqrt_one_minus_abar_;
};

/// Betas of a schedule kind in float64 (no zero-terminal-SNR shift), or an error for a bad config.
Result<at::Tensor> make_betas(const ScheduleConfig& config);

/// Lin et al. 2024, Algorithm 1: shifts sqrt(abar) so its last value is 0 while keeping the first,
/// then rebuilds betas. Input and output are float64 betas.
at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas);

/// The schedule in words: its kind, then any SNR shift and zero terminal SNR ("cosine, SNR x 4").
std::string schedule_summary(const ScheduleConfig& config);

/// The betas whose SNR(t) is `factor` times that of `betas` at every t (ScheduleConfig::snr_shift).
/// Input and output are float64 betas.
at::Tensor shift_snr(const at::Tensor& betas, double factor);

}  // namespace dlab
