#pragma once
// Score distillation as a run advanced one optimiser step at a time (for the CLI and a GUI job):
// (a) an image parameterised directly, (b) a voxel scene of density and brightness rendered from
// random azimuths. Both are pushed by the SDS gradient of a frozen class-conditional model.

#include <memory>
#include <optional>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include "core/distillation/sds.h"
#include "core/io/model_io.h"
#include "core/runtime/result.h"

namespace dlab {

struct SdsRunConfig {
    int64_t label = 0;      ///< the class asked for
    bool three_d = false;   ///< a voxel scene instead of an image
    SdsConfig sds;          ///< t range, guidance scale
    double lr = 0.03;       ///< Adam learning rate
    int64_t views = 4;      ///< 3-D: random azimuths rendered per step (the SDS batch)
    uint64_t seed = 0;
};

class SdsRun {
public:
    /// Checks the model (a UNet on images, class-conditional, eps/v/x0 prediction) and the label.
    static Result<std::unique_ptr<SdsRun>> create(const LoadedModel& model, const SdsRunConfig& config);

    /// One optimiser step; returns its pseudo-loss mean w(t) ||eps_hat - eps||^2 over the batch.
    double step();
    int64_t steps_done() const { return steps_; }

    /// The image ([1, C, S, S] in [-1, 1], CPU): the optimised image, or the scene from azimuth 0.
    at::Tensor image() const { return view(0.0); }
    /// 3-D: the scene rendered from `azimuth` radians ([1, C, S, S], CPU); 2-D: the image.
    at::Tensor view(double azimuth) const;

private:
    SdsRun() = default;
    at::Tensor render(double azimuth) const;  // 3-D, on the device, differentiable

    const LoadedModel* model_ = nullptr;
    SdsRunConfig config_;
    std::optional<NoiseSchedule> schedule_;
    ModelFn fn_;
    std::optional<at::Generator> gen_;
    at::Tensor image_;                // 2-D parameter
    at::Tensor density_, brightness_; // 3-D parameters (raw: softplus / tanh applied)
    std::unique_ptr<torch::optim::Adam> adam_;
    int64_t steps_ = 0, size_ = 28, channels_ = 1;
};

}  // namespace dlab
