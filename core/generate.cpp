#include "core/generate.h"

#include <ATen/ATen.h>

namespace dlab {

Result<at::Tensor> generate(const LoadedModel& model, const GenerateRequest& req, const GenerateStepHook& on_step) {
    const ModelConfig& mc = model.config;
    auto schedule = NoiseSchedule::create(mc.schedule);
    if (!schedule) return Error{schedule.error()};
    // Latents are unit-variance, not bounded to [-1, 1]: the predicted x0 is clipped at the
    // autoencoder's latent bound instead (without any clip, the first steps, where abar is ~0,
    // multiply the model's small eps error by 1/sqrt(abar) and the chain never recovers).
    SamplerConfig sampler_config = req.sampler;
    if (model.autoencoder) {
        sampler_config.clip_x0 = true;
        sampler_config.clip_value = model.autoencoder->config().latent_clip;
    }
    if (auto probe = make_sampler(schedule.value(), sampler_config); !probe) return Error{probe.error()};
    const NetworkConfig& nc = mc.network;
    const int64_t N = req.count, C = nc.num_classes;
    if (N < 1 || req.batch < 1) return Error{"generate: count and batch must be positive"};
    const std::vector<int64_t> shape = nc.kind == NetworkKind::UNet
                                           ? std::vector<int64_t>{N, nc.in_channels, nc.image_size, nc.image_size}
                                           : std::vector<int64_t>{N, nc.in_channels};
    at::Generator gen = make_generator(req.seed);
    const at::Tensor noise = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
    const c10::Device device = model.network->parameters().front().device();
    Network net = model.network;
    ModelFn fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) { return net->forward(x, t, y); };
    auto control = std::make_shared<GuidanceControl>(req.guidance, req.classifier_scale);
    const bool conditional = C > 0 && req.labels.defined();
    std::vector<at::Tensor> outs;
    for (int64_t start = 0; start < N; start += req.batch) {
        const int64_t n = std::min(req.batch, N - start);
        auto sampler = make_sampler(schedule.value(), sampler_config).value();
        at::Tensor y;
        if (conditional) y = req.labels.narrow(0, start, n).to(device);
        const bool null_only = conditional && (y == C).all().item<bool>();
        RawDenoiser raw = conditional && !null_only ? classifier_free_guidance(fn, y, C, control)
                                                    : plain_denoiser(fn, y);
        Denoiser denoise = make_denoiser(raw, schedule.value(), mc.prediction);
        if (req.classifier_grad && req.classifier_scale != 0.0) {
            const at::Tensor& target = req.classifier_labels.defined() ? req.classifier_labels : req.labels;
            if (!target.defined() || target.size(0) != N) return Error{"generate: classifier guidance needs a target class per sample"};
            if ((target < 0).any().item<bool>()) return Error{"generate: negative target class"};
            denoise = add_classifier_guidance(denoise, req.classifier_grad, target.narrow(0, start, n).to(device), control);
        }
        ChainHooks hooks;
        hooks.cancel = req.cancel;
        if (on_step) hooks.on_step = [&](const StepInfo& s) { on_step(start, n, s); };
        // Each batch's fresh noise comes from its own generator: results do not depend on batch order.
        at::Generator g = make_generator(req.seed * 7919ULL + static_cast<uint64_t>(start) + 1);
        const ChainResult r = run_chain(*sampler, noise.narrow(0, start, n).to(device),
                                        denoise, g, hooks);
        if (r.cancelled) return Error{"cancelled"};
        if (model.autoencoder && req.decode_latents) {
            at::NoGradGuard g;
            Autoencoder ae = model.autoencoder;
            outs.push_back(ae->decode(r.x).to(at::kCPU));
        } else {
            outs.push_back(r.x.to(at::kCPU));
        }
    }
    return at::cat(outs, 0);
}

}  // namespace dlab
