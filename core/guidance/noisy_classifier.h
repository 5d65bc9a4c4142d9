#pragma once
// A noise-aware classifier p(y | x_t, t) (Dhariwal & Nichol 2021): the UNet's encoder half with the
// time embedding, pooled into class logits, trained on images noised by a schedule. Its gradient
// d/dx_t log p(y | x_t, t) steers a chain (classifier guidance, guidance.h).

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/nn.h>

#include "core/data/datasets.h"
#include "core/guidance/guidance.h"
#include "core/runtime/result.h"
#include "core/forward/schedule.h"

namespace dlab {

/// Architecture and noise schedule of a noise-aware classifier; saved with its weights.
struct NoisyClassifierConfig {
    int64_t in_channels = 1;
    int64_t image_size = 28;
    int64_t base_channels = 32;
    std::vector<int64_t> channel_mult = {1, 2, 2};
    int64_t num_res_blocks = 1;
    std::vector<int64_t> attention_resolutions = {7};
    int64_t attention_heads = 4;
    int64_t groups = 8;
    int64_t num_classes = 10;
    double dropout = 0.0;
    ScheduleConfig schedule;  ///< the noise levels it was trained on
};
nlohmann::json to_json(const NoisyClassifierConfig& c);
Result<NoisyClassifierConfig> noisy_classifier_config_from_json(const nlohmann::json& j);

class NoisyClassifierImpl : public torch::nn::Module {
public:
    explicit NoisyClassifierImpl(const NoisyClassifierConfig& config);
    /// x_t in model space [B,C,H,W], t [B] timesteps of config().schedule -> logits [B, classes].
    at::Tensor forward(const at::Tensor& x, const at::Tensor& t);
    const NoisyClassifierConfig& config() const { return cfg_; }

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
    NoisyClassifierConfig cfg_;
};
TORCH_MODULE(NoisyClassifier);

/// Training settings.
struct NoisyClassifierTraining {
    int64_t steps = 6000;
    int64_t batch = 128;
    double lr = 3e-4;
    int64_t warmup = 200;
    uint64_t seed = 0;
    int64_t log_every = 500;
};

/// Accuracy on `data` at each timestep in `ts` (fixed noise from `seed`), as (t, accuracy).
std::vector<std::pair<int64_t, double>> noisy_accuracy_by_t(NoisyClassifier& net, const LabelledData& data,
                                                            const std::vector<int64_t>& ts, c10::Device device,
                                                            uint64_t seed = 1);

/// Trains on x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with t uniform (AdamW, warm-up,
/// cross-entropy, random 2-pixel shifts); `log` gets progress lines; `cancel` is checked every step.
Result<NoisyClassifier> train_noisy_classifier(const NoisyClassifierConfig& config,
                                               const NoisyClassifierTraining& training,
                                               const LabelledData& train, c10::Device device,
                                               const std::function<void(const std::string&)>& log = {},
                                               const std::atomic<bool>* cancel = nullptr);

/// Saves/loads with the config (and any `report`, e.g. accuracy by t) as JSON metadata.
Status save_noisy_classifier(const std::string& path, NoisyClassifier& net, const nlohmann::json& report);
Result<NoisyClassifier> load_noisy_classifier(const std::string& path, c10::Device device);

/// The classifier's gradient for guidance on a chain of a model with `model_schedule`: each model
/// timestep is mapped to the classifier timestep of nearest abar, so the two schedules may differ.
ClassifierGradFn classifier_gradient(NoisyClassifier net, const NoiseSchedule& model_schedule);

}  // namespace dlab
