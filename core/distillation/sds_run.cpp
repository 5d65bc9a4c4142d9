#include "core/distillation/sds_run.h"

#include <cmath>

#include <torch/torch.h>

#include "core/networks/graphed_model.h"
#include "core/sampling/sampler.h"

namespace dlab {

Result<std::unique_ptr<SdsRun>> SdsRun::create(const LoadedModel& model, const SdsRunConfig& c) {
    const NetworkConfig& n = model.config.network;
    if (n.kind != NetworkKind::UNet || model.autoencoder || n.context_dim > 0)
        return Error{"sds: needs a class-conditional pixel-space image model (" + model.path + " is not one)"};
    if (n.num_classes < 1) return Error{"sds: the model is unconditional; score distillation here asks for a class"};
    if (c.label < 0 || c.label >= n.num_classes)
        return Error{"sds: class " + std::to_string(c.label) + " is outside 0.." + std::to_string(n.num_classes - 1)};
    if (!(c.lr > 0) || !std::isfinite(c.lr)) return Error{"sds: the learning rate must be positive"};
    if (c.views < 1 || c.views > 256) return Error{"sds: views per step must be 1 to 256"};
    if (!(c.sds.t_lo >= 0 && c.sds.t_hi <= 1 && c.sds.t_lo < c.sds.t_hi)) return Error{"sds: the t range must lie in [0, 1]"};
    auto schedule = NoiseSchedule::create(model.config.schedule);
    if (!schedule) return Error{"sds: " + schedule.error()};
    std::unique_ptr<SdsRun> r(new SdsRun());
    r->model_ = &model;
    r->config_ = c;
    r->config_.sds.prediction = model.config.prediction;
    r->schedule_.emplace(schedule.value());
    r->fn_ = model_function(model.network);
    r->gen_.emplace(make_generator(c.seed));
    r->size_ = n.image_size;
    r->channels_ = n.in_channels;
    const auto dev = model.network->parameters().front().device();
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    at::Generator init = make_generator(c.seed + 1);
    std::vector<at::Tensor> params;
    if (!c.three_d) {
        r->image_ = (0.1 * at::randn({1, n.in_channels, n.image_size, n.image_size}, init, f32)).to(dev).requires_grad_(true);
        params.push_back(r->image_);
    } else {
        if (n.in_channels != 1) return Error{"sds: the 3-D scene renders grey images; the model takes " +
                                              std::to_string(n.in_channels) + " channels"};
        // A soft ball of density in the middle (DreamFusion starts from a blob), grey inside.
        const int64_t S = n.image_size;
        const at::Tensor ax = at::linspace(-1, 1, S, f32);
        const at::Tensor r2 = ax.view({S, 1, 1}).pow(2) + ax.view({1, S, 1}).pow(2) + ax.view({1, 1, S}).pow(2);
        r->density_ = (-2.0 + 5.0 * at::exp(-r2 / (2 * 0.3 * 0.3)) + 0.01 * at::randn({S, S, S}, init, f32)).to(dev).requires_grad_(true);
        r->brightness_ = (0.01 * at::randn({S, S, S}, init, f32)).to(dev).requires_grad_(true);
        params = {r->density_, r->brightness_};
    }
    r->adam_ = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(c.lr));
    return r;
}

at::Tensor SdsRun::render(double azimuth) const {
    return render_voxels(at::softplus(density_) * 4.0, at::tanh(brightness_), azimuth, size_, -1.0);
}

at::Tensor SdsRun::view(double azimuth) const {
    torch::NoGradGuard g;
    if (!config_.three_d) return image_.detach().clamp(-1, 1).to(at::kCPU);
    return render(azimuth).unsqueeze(0).to(at::kCPU);
}

double SdsRun::step() {
    const auto dev = model_->network->parameters().front().device();
    adam_->zero_grad();
    at::Tensor x;
    if (!config_.three_d) {
        x = image_;
    } else {
        // Random azimuths in [0, 2 pi): every side of the scene must look like the class.
        const at::Tensor az = at::rand({config_.views}, *gen_, at::TensorOptions().dtype(at::kFloat)) * (2 * M_PI);
        std::vector<at::Tensor> views;
        for (int64_t v = 0; v < config_.views; ++v) views.push_back(render(az[v].item<double>()));
        x = at::stack(views, 0);  // [V, 1, S, S]
    }
    const at::Tensor labels = at::full({x.size(0)}, config_.label, at::TensorOptions().dtype(at::kLong).device(dev));
    SdsSample s;
    const at::Tensor g = sds_gradient(fn_, *schedule_, x, labels, model_->config.network.num_classes, config_.sds, *gen_, &s);
    // The surrogate whose gradient in x is the SDS gradient (the denoiser is not differentiated).
    (g.detach() * x).sum().backward();
    adam_->step();
    if (!config_.three_d) {
        torch::NoGradGuard ng;
        image_.clamp_(-1, 1);
    }
    ++steps_;
    const at::Tensor residual = (s.eps_hat - s.eps.to(dev)).pow(2).flatten(1).mean(1);
    return (s.weight.to(dev) * residual).mean().item<double>();
}

}  // namespace dlab
