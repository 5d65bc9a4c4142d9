#pragma once
// core/training/ -- learning to denoise. The trainer (noise-prediction loss with eps/x0/v targets,
// min-SNR weighting, the hybrid loss with a learned variance, label dropout for classifier-free
// guidance, AdamW, EMA, atomic checkpoints and exact resume) and the variational-bound terms
// (`losses.h`: Gaussian KLs, the discretised decoder likelihood, the learned-variance mix).
//
// The trainer: L_simple (Ho et al. 2020) with eps, x0 or v targets, optional min-SNR weighting,
// the hybrid loss L_simple + 0.001 L_vlb for networks with a learned variance (Nichol & Dhariwal 2021),
// bf16 autocast on CUDA,
// classifier-free label dropout, AdamW with warm-up and gradient clipping, EMA weights, atomic
// periodic checkpoints and exact resume (every step's randomness is derived from seed and step).

#include <atomic>
#include <functional>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "core/data/datasets.h"
#include "core/io/model_io.h"
#include "core/runtime/result.h"
#include "core/text/captions.h"

namespace dlab {

/// Optimisation settings; saved in the checkpoint.
struct TrainConfig {
    int64_t steps = 10000;
    int64_t batch = 128;
    double lr = 2e-4;
    double weight_decay = 0.0;
    int64_t warmup = 200;            ///< linear learning-rate warm-up steps
    std::string lr_decay = "constant";  ///< after the warm-up: "constant" or "cosine" (to lr_final x lr at `steps`)
    double lr_final = 0.1;           ///< cosine decay: the last step's learning rate as a fraction of lr
    /// A new run's starting weights: a model file of the same network, schedule and prediction
    /// (e.g. a bundled model, to go on training it without its optimizer state); "" for random.
    std::string init_from;
    double grad_clip = 1.0;          ///< max global gradient norm (0: off)
    double ema_decay = 0.999;
    double p_uncond = 0.1;           ///< probability of the null class (classifier-free guidance)
    double min_snr_gamma = 0.0;      ///< min-SNR-gamma loss weighting (0: off; 5 is usual)
    bool hflip = false;              ///< random horizontal flips
    double vlb_weight = 0.001;       ///< hybrid loss (networks with learn_sigma): L_simple + w L_vlb
    bool bf16 = false;               ///< bf16 autocast of the forward pass (CUDA only)
    uint64_t seed = 0;
    int64_t checkpoint_every = 1000;
    int64_t log_every = 100;
};
nlohmann::json to_json(const TrainConfig& c);
/// The learning rate of optimiser step `step` (counted from 0): linear warm-up to lr, then constant
/// or a cosine from lr down to lr_final x lr at the last step (tc.steps - 1).
double learning_rate(const TrainConfig& tc, int64_t step);
TrainConfig train_config_from_json(const nlohmann::json& j);

/// Applies a JSON settings file over `model` and `train`: any of the keys "network" (an object of
/// NetworkConfig fields), "schedule" (ScheduleConfig fields, "kind" by name), "prediction", and
/// "training" (TrainConfig fields). Absent keys keep their values; an unknown key or a value of the
/// wrong type is an error naming it.
Status apply_settings_json(const nlohmann::json& j, ModelConfig& model, TrainConfig& train);

/// A progress report.
struct TrainProgress {
    int64_t step = 0, total = 0;
    double loss = 0, lr = 0, images_per_s = 0, eta_s = 0;
};

struct Clip;

/// Text-to-image training (network context_dim > 0, num_classes 0): each image's caption is drawn
/// from (seed, step, position in the global batch) with make_caption over its attribute levels,
/// encoded by the frozen text encoder and fed through cross-attention; prompt dropout (p_uncond)
/// gives the null prompt, the encoder's states of the empty prompt.
struct TextTraining {
    std::shared_ptr<Clip> clip;
    at::Tensor levels;                    ///< [N, 3] int64 attribute levels of every training image
    std::vector<HeldOutPair> held_out;    ///< pairs no caption may name
};

/// Video training (network frames = T > 0): the clips of every step come from `clips(key, count)`:
/// frames [count * T, C, H, W] in [-1, 1], clip by clip, and a label per clip [count] (num_classes
/// = null). The key is the step's, so a run is reproducible and resumable.
struct VideoTraining {
    std::function<std::pair<at::Tensor, at::Tensor>(uint64_t key, int64_t count)> clips;
};

/// Per-call hooks: progress reports, a cancel flag checked every step, a pause flag (the loop
/// waits between two steps while it is set, still honouring cancel), and snapshots of the EMA
/// network every `snapshot_every` steps (and at the last step), e.g. to draw a sample grid. The
/// snapshot network is in eval mode on the training device; its time is left out of images/s.
struct TrainHooks {
    std::function<void(const TrainProgress&)> on_progress;
    const std::atomic<bool>* cancel = nullptr;
    const std::atomic<bool>* pause = nullptr;
    int64_t snapshot_every = 0;
    std::function<void(int64_t step, const ModelConfig& config, Network ema)> on_snapshot;
    /// Data-parallel runs: the size of a gradient bucket (a run's result does not depend on it).
    int64_t bucket_bytes = 25LL << 20;
    /// Text-to-image training; null for class-conditional (or unconditional) training.
    const TextTraining* text = nullptr;
    /// Video training; null for images.
    const VideoTraining* video = nullptr;
};

struct TrainResult {
    int64_t steps_done = 0;   ///< the step count reached (including resumed steps)
    bool cancelled = false;
    double last_loss = 0;
    double seconds = 0;       ///< wall time of this call
    double images_per_s = 0;  ///< throughput of this call (images of the global batch per second)
    /// Throughput over the log windows after this call's first (which holds the warm-up, cuDNN's
    /// algorithm choices and the CUDA graph's capture): the steady pace, as peers time it after their
    /// warm-up steps; 0 with fewer than two log windows.
    double steady_images_per_s = 0;
    int64_t buckets = 0;      ///< data-parallel runs: gradient buckets, and how many started during backward
    int64_t overlapped_buckets = 0;
};

/// The network size presets: "tiny", "small" (the bundled default's size) and "large".
const std::vector<std::string>& size_presets();
/// Sets the width/depth fields of `net` for a preset (UNet channels and blocks, MLP width); an
/// unknown name is an error listing the presets.
Status apply_size_preset(const std::string& preset, NetworkConfig& net);
/// Fits the network's kind and input shape to the data: images [N,C,H,W] get a UNet of that
/// channel count and size (attention at 1/4 of the side), points [N,D] an MLP; the class count
/// follows the data.
void shape_network_for_data(const LabelledData& data, NetworkConfig& net);

/// How a training call treats its run folder.
enum class TrainStart {
    New,        ///< a new run: refused when the folder already holds one (nothing is lost)
    Resume,     ///< continue from out_dir/checkpoint.safetensors
    Overwrite,  ///< a new run that replaces the folder's earlier one, asked for explicitly
};

class Communicator;

/// Trains a model on `data` into `out_dir` (checkpoint.safetensors, model.safetensors, loss.csv).
/// A checkpoint or model is written only after every weight and optimizer state was checked to be
/// finite; a NaN or Inf loss or weight stops with an error and leaves the last good checkpoint in
/// place.
///
/// With a communicator of W > 1 ranks the run is data-parallel: every rank draws the whole global
/// batch of a step from (seed, step), exactly as one process would, and trains on its 1/W slice;
/// gradients are averaged over the ranks (bucketed, overlapping backward) and every rank takes the
/// same optimiser step. Rank 0 alone reads and writes the run folder (it broadcasts the weights,
/// optimiser state and step it starts from), so a run resumes on any number of ranks. `batch` must
/// be a multiple of W. Dropout masks differ by rank (the only thing a 1-rank run does differently).
Result<TrainResult> train(ModelConfig model_config, const TrainConfig& config,
                          const LabelledData& data, c10::Device device, const std::string& out_dir,
                          TrainStart start, const TrainHooks& hooks = {}, Communicator* comm = nullptr);

/// Whether a folder holds a training run (a checkpoint, a model or a loss log).
bool holds_training_run(const std::string& dir);

}  // namespace dlab
