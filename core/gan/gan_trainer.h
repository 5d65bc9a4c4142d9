#pragma once
// Training a GAN with the conventions of the diffusion trainer: a run folder (checkpoint.safetensors,
// model.safetensors, loss.csv), checkpoints only after a finiteness check, exact resume (every
// step's randomness derived from seed and step), a cancel flag for --max-minutes. Both losses are
// kept in loss.csv with the discriminator's accuracy on real and fake batches and a diversity
// ratio (mean pairwise distance of 256 EMA samples over that of 256 real images): a run whose
// ratio falls below kGanCollapseRatio is reported as collapsed, never as a good model.

#include <atomic>
#include <functional>
#include <string>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "core/data/datasets.h"
#include "core/gan/gan.h"
#include "core/runtime/result.h"
#include "core/training/trainer.h"

namespace dlab {

struct GanTrainConfig {
    int64_t steps = 20000;
    int64_t batch = 128;
    double lr_g = 2e-4, lr_d = 2e-4;
    double beta1 = 0.0, beta2 = 0.9;  ///< Adam's betas (the usual for spectrally normalised hinge GANs)
    double ema_decay = 0.999;         ///< EMA of the generator (its batch-norm statistics are copied)
    uint64_t seed = 0;
    int64_t checkpoint_every = 1000;
    int64_t log_every = 100;
};
nlohmann::json to_json(const GanTrainConfig& c);
GanTrainConfig gan_train_config_from_json(const nlohmann::json& j);

/// Below this diversity ratio a run counts as collapsed (real data: 1; a collapsed GAN: near 0).
constexpr double kGanCollapseRatio = 0.3;

struct GanTrainProgress {
    int64_t step = 0, total = 0;
    double d_loss = 0, g_loss = 0, d_real_acc = 0, d_fake_acc = 0, diversity_ratio = 0, images_per_s = 0, eta_s = 0;
};

struct GanTrainHooks {
    std::function<void(const GanTrainProgress&)> on_progress;
    const std::atomic<bool>* cancel = nullptr;
    const std::atomic<bool>* pause = nullptr;  ///< the loop waits between two steps while set
    int64_t snapshot_every = 0;                ///< steps between snapshots (0: none); also the last step
    /// The EMA generator in eval mode (its time is left out of images/s).
    std::function<void(int64_t step, GeneratorImpl& ema)> on_snapshot;
};

struct GanTrainResult {
    int64_t steps_done = 0;
    bool cancelled = false;
    bool collapsed = false;      ///< the last diversity ratio was below kGanCollapseRatio
    double d_loss = 0, g_loss = 0, diversity_ratio = 0;
    double seconds = 0, images_per_s = 0;
};

/// Trains a GAN on image data ([N, C, H, W] in [-1, 1]) into `out_dir`. The model file holds the EMA
/// generator; its training record says "collapsed" when the run collapsed.
Result<GanTrainResult> train_gan(const GanConfig& config, const GanTrainConfig& train, const LabelledData& data,
                                 c10::Device device, const std::string& out_dir, TrainStart start,
                                 const GanTrainHooks& hooks = {});

/// Mean pairwise Euclidean distance between the rows of x (flattened), exact.
double mean_pairwise_distance(const at::Tensor& x);

}  // namespace dlab
