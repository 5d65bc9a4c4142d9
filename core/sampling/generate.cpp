#include "core/sampling/generate.h"

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/networks/graphed_model.h"
#include "core/runtime/runtime.h"

namespace dlab {

struct GenerateRun::State {
    const LoadedModel* model = nullptr;
    GenerateRequest req;
    NoiseSchedule schedule;
    SamplerConfig sampler_config;
    at::Tensor noise;
    c10::Device device = c10::kCPU;
    ModelFn fn;
    std::shared_ptr<GuidanceControl> control;
    bool conditional = false;
    int64_t N = 0, C = 0, steps_per_batch = 0;
    // The batch being sampled.
    int64_t start = 0, n = 0, index = 0;
    std::unique_ptr<Sampler> sampler;
    Denoiser denoise;
    std::optional<at::Generator> gen;
    at::Tensor x;
    bool in_batch = false;
    int64_t steps_done = 0;
    std::vector<at::Tensor> outs;

    explicit State(NoiseSchedule s) : schedule(std::move(s)) {}

    // Sets up the batch at `start`: its sampler, its denoiser (guidance on its labels), its noise.
    void begin_batch() {
        n = std::min(req.batch, N - start);
        sampler = make_sampler(schedule, sampler_config).value();
        at::Tensor y;
        if (conditional) y = req.labels.narrow(0, start, n).to(device);
        const bool null_only = conditional && (y == C).all().item<bool>();
        RawDenoiser raw = conditional && !null_only ? classifier_free_guidance(fn, y, C, control)
                                                    : plain_denoiser(fn, y);
        denoise = make_denoiser(raw, schedule, model->config.prediction);
        if (req.classifier_grad && req.classifier_scale != 0.0) {
            const at::Tensor& target = req.classifier_labels.defined() ? req.classifier_labels : req.labels;
            denoise = add_classifier_guidance(denoise, req.classifier_grad, target.narrow(0, start, n).to(device), control);
        }
        // Each batch's fresh noise comes from its own generator: results do not depend on batch order.
        gen = make_generator(req.seed * 7919ULL + static_cast<uint64_t>(start) + 1);
        x = noise.narrow(0, start, n).to(device);
        index = req.start_step;
        in_batch = true;
    }

    void end_batch() {
        // A damaged or diverged model gives NaN or Inf: an error, never silently black images.
        if (!at::isfinite(x).all().item<bool>())
            throw std::runtime_error("the model produced non-finite values (NaN or Inf) in samples " + std::to_string(start) +
                                     " to " + std::to_string(start + n - 1) +
                                     ": its weights are damaged or it was saved from a diverged run");
        if (model->autoencoder && req.decode_latents) {
            at::NoGradGuard g;
            Autoencoder ae = model->autoencoder;
            outs.push_back(ae->decode(x).to(at::kCPU));
        } else {
            outs.push_back(x.to(at::kCPU));
        }
        x = at::Tensor();
        sampler.reset();
        in_batch = false;
        start += n + (req.shards - 1) * req.batch;  // the next batch of this shard
    }
};

std::vector<int64_t> shard_batch_sizes(int64_t count, int64_t batch, int64_t shard, int64_t shards) {
    std::vector<int64_t> sizes;
    for (int64_t start = shard * batch; start < count; start += shards * batch) sizes.push_back(std::min(batch, count - start));
    return sizes;
}

at::Tensor assemble_shards(const std::vector<at::Tensor>& padded, int64_t count, int64_t batch) {
    const int64_t shards = static_cast<int64_t>(padded.size());
    std::vector<at::Tensor> parts;
    std::vector<int64_t> offset(padded.size(), 0);
    for (int64_t start = 0, b = 0; start < count; start += batch, ++b) {
        const int64_t n = std::min(batch, count - start);
        const size_t r = static_cast<size_t>(b % shards);
        parts.push_back(padded[r].narrow(0, offset[r], n));
        offset[r] += n;
    }
    return at::cat(parts, 0);
}

GenerateRun::GenerateRun(std::unique_ptr<State> state) : s_(std::move(state)) {}
GenerateRun::~GenerateRun() = default;

Result<std::unique_ptr<GenerateRun>> GenerateRun::create(const LoadedModel& model, const GenerateRequest& req) {
    const ModelConfig& mc = model.config;
    auto schedule = NoiseSchedule::create(mc.schedule);
    if (!schedule) return Error{schedule.error()};
    auto s = std::make_unique<State>(schedule.value());
    s->model = &model;
    s->req = req;
    // Latents are unit-variance, not bounded to [-1, 1]: the predicted x0 is clipped at the
    // autoencoder's latent bound instead (without any clip, the first steps, where abar is ~0,
    // multiply the model's small eps error by 1/sqrt(abar) and the chain never recovers).
    s->sampler_config = req.sampler;
    if (model.autoencoder) {
        s->sampler_config.clip_x0 = true;
        s->sampler_config.clip_value = model.autoencoder->config().latent_clip;
    }
    auto probe = make_sampler(s->schedule, s->sampler_config);
    if (!probe) return Error{probe.error()};
    if (req.start_step < 0 || req.start_step >= probe.value()->num_steps())
        return Error{"generate: the chains' first step " + std::to_string(req.start_step) + " is outside 0.." +
                     std::to_string(probe.value()->num_steps() - 1)};
    if (req.start_step > 0 && !req.noise.defined())
        return Error{"generate: a chain that starts at step " + std::to_string(req.start_step) + " needs its samples there (noise)"};
    s->steps_per_batch = probe.value()->num_steps() - req.start_step;
    const NetworkConfig& nc = mc.network;
    s->N = req.count;
    s->C = nc.num_classes;
    if (s->N < 1 || req.batch < 1) return Error{"generate: count and batch must be positive"};
    if (req.shards < 1 || req.shard < 0 || req.shard >= req.shards)
        return Error{"generate: shard " + std::to_string(req.shard) + " of " + std::to_string(req.shards) + " does not exist"};
    s->start = req.shard * req.batch;  // a shard with no batch (more shards than batches) is done at once
    const bool text = nc.context_dim > 0;
    s->conditional = (s->C > 0 || text) && req.labels.defined();
    if (text) {
        // The prompt table goes into the network; labels index it (0: the null or negative prompt).
        const int64_t P = req.prompt_states.defined() ? req.prompt_states.size(0) : 0;
        if (P == 0 && req.labels.defined() && req.labels.numel() > 0 && req.labels.max().item<int64_t>() > 0)
            return Error{"generate: this is a text-to-image model: it takes prompts, not classes "
                         "(sample it with --prompt, or in the Reverse chain tab with a prompt)"};
        if (req.labels.defined() && req.labels.numel() > 0 &&
            (req.labels.min().item<int64_t>() < 0 || req.labels.max().item<int64_t>() > P))
            return Error{"generate: a prompt label is outside 0.." + std::to_string(P) + " (0: the null prompt)"};
        try {
            if (P > 0 || req.negative_states.defined()) {
                const auto f32 = at::TensorOptions().dtype(at::kFloat);
                const int64_t L = nc.context_length, D = nc.context_dim;
                model.network->set_prompts(P > 0 ? req.prompt_states : at::zeros({0, L, D}, f32),
                                           P > 0 ? req.prompt_valid : at::zeros({0, L}, f32.dtype(at::kBool)),
                                           req.negative_states, req.negative_valid);
            } else {
                model.network->set_prompts(at::zeros({0, nc.context_length, nc.context_dim}),
                                           at::zeros({0, nc.context_length}, at::TensorOptions().dtype(at::kBool)));
            }
        } catch (const std::exception& e) {
            return Error{std::string("generate: ") + e.what()};
        }
    } else if (req.prompt_states.defined()) {
        return Error{"generate: prompts were given but the model is not text-conditional"};
    }
    // The memory budget, before anything is allocated: a batch of the network's activations
    // (twice with classifier-free guidance) must fit in half the free memory.
    s->device = model.network->parameters().front().device();
    if (auto st = check_memory_budget("generate: a batch", std::min(req.batch, s->N),
                                      nc.min_activation_bytes() * (s->conditional ? 2 : 1), s->device);
        !st)
        return Error{st.error() + " (--batch)"};
    if (req.classifier_grad && req.classifier_scale != 0.0) {
        const at::Tensor& target = req.classifier_labels.defined() ? req.classifier_labels : req.labels;
        if (!target.defined() || target.size(0) != s->N) return Error{"generate: classifier guidance needs a target class per sample"};
        if ((target < 0).any().item<bool>()) return Error{"generate: negative target class"};
    }
    const std::vector<int64_t> shape = nc.kind == NetworkKind::UNet
                                           ? std::vector<int64_t>{s->N, nc.in_channels, nc.image_size, nc.image_size}
                                           : std::vector<int64_t>{s->N, nc.in_channels};
    if (req.noise.defined()) {
        if (req.noise.sizes().vec() != shape) return Error{"generate: the starting noise has the wrong shape"};
        if (!at::isfinite(req.noise).all().item<bool>()) return Error{"generate: the starting noise is not finite"};
        s->noise = req.noise.to(at::kCPU, at::kFloat).contiguous();
    } else {
        at::Generator gen = make_generator(req.seed);
        s->noise = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
    }
    Network net = model.network;
    // A text model reads its prompt table in the forward pass: no CUDA graphs (eager).
    if (req.bf16 && !s->device.is_cuda())
        return Error{"generate: bf16 inference needs a CUDA device (the model is on " + s->device.str() + ")"};
    std::shared_ptr<GraphedModel> graphs;
    if (req.cuda_graphs && !text) {
        if (req.graphs && req.graphs->network() != net)
            return Error{"generate: the CUDA graphs given belong to another network"};
        // Graphs captured under bf16 autocast hold bf16 kernels: a bf16 request captures its own.
        graphs = req.graphs && !req.bf16 ? req.graphs : std::make_shared<GraphedModel>(net);
    }
    s->fn = model_function(net, graphs, req.bf16);
    s->control = std::make_shared<GuidanceControl>(req.guidance, req.classifier_scale);
    return std::unique_ptr<GenerateRun>(new GenerateRun(std::move(s)));
}

bool GenerateRun::done() const { return s_->start >= s_->N; }

int64_t GenerateRun::steps_done() const { return s_->steps_done; }

int64_t GenerateRun::total_steps() const {
    return static_cast<int64_t>(shard_batch_sizes(s_->N, s_->req.batch, s_->req.shard, s_->req.shards).size()) *
           s_->steps_per_batch;
}

void GenerateRun::step(const GenerateStepHook& on_step) {
    if (done()) return;
    State& s = *s_;
    if (!s.in_batch) s.begin_batch();
    {
        c10::NoGradGuard no_grad;
        const int64_t total = s.sampler->num_steps();
        StepOutput out = s.sampler->step(s.index, s.x, s.denoise, *s.gen);
        if (on_step) {
            on_step(s.start, s.n,
                    StepInfo{s.index, total, s.sampler->timesteps()[static_cast<size_t>(s.index)], s.x, out.x0,
                             out.eps, out.x_prev});
        }
        s.x = out.x_prev;
        ++s.index;
        ++s.steps_done;
        if (s.index < total) return;
    }
    s.end_batch();
}

at::Tensor GenerateRun::result() const { return s_->outs.empty() ? at::Tensor() : at::cat(s_->outs, 0); }

at::Tensor slerp(const at::Tensor& a, const at::Tensor& b, double t) {
    const at::Tensor fa = a.flatten().to(at::kDouble), fb = b.flatten().to(at::kDouble);
    const double cosw = (fa.dot(fb) / (fa.norm() * fb.norm() + 1e-300)).item<double>();
    const double w = std::acos(std::max(-1.0, std::min(1.0, cosw)));
    if (std::sin(w) < 1e-6) return a * (1 - t) + b * t;
    return (a * (std::sin((1 - t) * w) / std::sin(w)) + b * (std::sin(t * w) / std::sin(w))).to(a.scalar_type());
}

Status check_starts_from_fashion_mnist(const LoadedModel& model) {
    const NetworkConfig& nc = model.config.network;
    if (nc.kind != NetworkKind::UNet) return Status::failure("needs an image model, not a 2-D toy model");
    const auto& ae = model.autoencoder;
    const int64_t side = ae ? ae->config().image_size : nc.image_size, channels = ae ? ae->config().in_channels : nc.in_channels;
    if (side != 28 || channels != 1)
        return Status::failure("needs a model of 28x28 grey images (this one: " + std::to_string(channels) + "x" +
                               std::to_string(side) + "x" + std::to_string(side) + ")");
    return Status::success();
}

Result<int64_t> start_from_clean(GenerateRequest& req, const NoiseSchedule& schedule, const at::Tensor& x0,
                                 const at::Tensor& eps, int64_t t) {
    if (t < 0 || t >= schedule.timesteps())
        return Error{"the starting timestep " + std::to_string(t) + " is outside 0.." + std::to_string(schedule.timesteps() - 1)};
    if (!x0.defined() || !eps.defined() || x0.sizes() != eps.sizes() || x0.dim() < 2)
        return Error{"the clean samples and their noise need one shape [N, ...]"};
    if (req.sampler.steps < 1 || req.sampler.steps > schedule.timesteps())
        return Error{"the sampler's steps must be within 1.." + std::to_string(schedule.timesteps())};
    const std::vector<int64_t> ts = make_timesteps(schedule.timesteps(), req.sampler.steps, req.sampler.spacing);
    const int64_t k = first_step_at_or_below(ts, t), at_t = ts[static_cast<size_t>(k)];
    req.noise = schedule.add_noise(x0, eps, at::full({x0.size(0)}, at_t, at::TensorOptions().dtype(at::kLong).device(x0.device())));
    req.start_step = k;
    return at_t;
}

Result<int64_t> start_from_image(GenerateRequest& req, const LoadedModel& model, const NoiseSchedule& schedule,
                                 const at::Tensor& image, int64_t n, uint64_t seed, int64_t t) {
    if (!image.defined() || image.dim() != 4 || image.size(0) != 1) return Error{"the starting image must be one [1, C, H, W] image"};
    if (n < 1) return Error{"the number of chains must be at least 1"};
    at::Tensor x0;
    {
        c10::NoGradGuard ng;
        Autoencoder ae = model.autoencoder;  // a handle to the same module (encode is not const)
        const c10::Device device = model.network->parameters().front().device();
        x0 = ae ? ae->encode(image.to(device, at::kFloat)).to(at::kCPU) : image.to(at::kCPU, at::kFloat);
    }
    x0 = x0.expand({n, x0.size(1), x0.size(2), x0.size(3)}).contiguous();
    at::Generator g = make_generator(seed * 7919ULL + 17);
    const at::Tensor eps = at::randn(x0.sizes(), g, at::TensorOptions().dtype(at::kFloat));
    return start_from_clean(req, schedule, x0, eps, t);
}

Result<at::Tensor> generate(const LoadedModel& model, const GenerateRequest& req, const GenerateStepHook& on_step) {
    auto run = GenerateRun::create(model, req);
    if (!run) return Error{run.error()};
    GenerateRun& r = *run.value();
    while (!r.done()) {
        if (req.cancel && req.cancel->load(std::memory_order_relaxed)) return Error{"cancelled"};
        try {
            r.step(on_step);
        } catch (const std::exception& e) {
            if (is_out_of_memory(e)) {
                const int64_t b = std::min(req.batch, req.count);
                return Error{"out of memory at a batch of " + std::to_string(b) + " samples on " +
                             model.network->parameters().front().device().str() + "; use a batch of " +
                             std::to_string(std::max<int64_t>(1, b / 4)) + " or less (--batch)"};
            }
            return Error{error_message(e)};
        }
    }
    return r.result();
}

}  // namespace dlab
