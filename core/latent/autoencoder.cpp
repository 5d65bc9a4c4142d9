#include "core/latent/autoencoder.h"

#include <chrono>
#include <cmath>

#include <torch/torch.h>

#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/sampling/sampler.h"

namespace dlab {

using json = nlohmann::json;
namespace nn = torch::nn;

Status AutoencoderConfig::validate() const {
    if (in_channels < 1 || image_size < 4 || pad < 0 || base_channels < 1 || latent_channels < 1 || groups < 1 ||
        num_res_blocks < 0 || channel_mult.empty())
        return Status::failure("autoencoder: sizes must be positive");
    // Upper bounds before anything is sized or shifted by these.
    if (in_channels > 64 || image_size > 4096 || pad > 1024 || base_channels > 1024 || latent_channels > 256 ||
        groups > 1024 || num_res_blocks > 16 || channel_mult.size() > 8)
        return Status::failure("autoencoder: a size is out of range (channels <= 64, image_size <= 4096, pad <= 1024, "
                               "base_channels <= 1024, latent_channels <= 256, groups <= 1024, num_res_blocks <= 16, "
                               "at most 8 levels)");
    for (int64_t m : channel_mult)
        if (m > 16) return Status::failure("autoencoder: channel multipliers must be <= 16");
    for (int64_t m : channel_mult)
        if (m < 1 || (base_channels * m) % groups != 0)
            return Status::failure("autoencoder: every level's channels must be a positive multiple of the groups");
    const int64_t halvings = int64_t(channel_mult.size()) - 1;
    if (padded_size() % (int64_t(1) << halvings) != 0)
        return Status::failure("autoencoder: the padded side " + std::to_string(padded_size()) + " is not divisible by 2^" +
                               std::to_string(halvings));
    if (!(scale_factor > 0) || !std::isfinite(scale_factor)) return Status::failure("autoencoder: scale_factor must be positive");
    if (!(latent_clip > 0)) return Status::failure("autoencoder: latent_clip must be positive");
    return check_channel_norm(latent_shift, latent_scale, latent_channels, "autoencoder");
}

Status check_channel_norm(const std::vector<double>& shift, const std::vector<double>& scale, int64_t channels,
                          const std::string& where) {
    if (shift.empty() && scale.empty()) return Status::success();
    if (int64_t(shift.size()) != channels || int64_t(scale.size()) != channels)
        return Status::failure(where + ": latent_shift and latent_scale need one entry per latent channel (" +
                               std::to_string(channels) + "), got " + std::to_string(shift.size()) + " and " +
                               std::to_string(scale.size()));
    for (size_t c = 0; c < shift.size(); ++c)
        if (!std::isfinite(shift[c]) || !std::isfinite(scale[c]) || !(scale[c] > 0))
            return Status::failure(where + ": latent channel " + std::to_string(c) +
                                   " needs a finite shift and a finite positive scale");
    return Status::success();
}

std::pair<std::vector<double>, std::vector<double>> measure_channel_norm(const at::Tensor& raw_latents) {
    const at::Tensor per = raw_latents.to(at::kDouble).transpose(0, 1).reshape({raw_latents.size(1), -1});
    const at::Tensor mean = per.mean(1).contiguous(), sd = per.std(1).contiguous();
    std::vector<double> shift(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel()), scale;
    for (int64_t c = 0; c < sd.numel(); ++c) scale.push_back(1.0 / std::max(sd[c].item<double>(), 1e-8));
    return {shift, scale};
}

json to_json(const AutoencoderConfig& c) {
    json j{{"in_channels", c.in_channels}, {"image_size", c.image_size}, {"pad", c.pad},
                {"base_channels", c.base_channels}, {"channel_mult", c.channel_mult},
                {"num_res_blocks", c.num_res_blocks}, {"latent_channels", c.latent_channels},
                {"groups", c.groups}, {"scale_factor", c.scale_factor}, {"latent_clip", c.latent_clip}, {"dataset", c.dataset},
                {"class_names", c.class_names}, {"training", c.training}};
    if (!c.latent_scale.empty()) j["latent_norm"] = json{{"shift", c.latent_shift}, {"scale", c.latent_scale}};
    return j;
}

Result<AutoencoderConfig> autoencoder_config_from_json(const json& j) {
    AutoencoderConfig c;
    if (auto st = check_json_numbers(j, "autoencoder config"); !st) return Error{st.error()};
    try {
        c.in_channels = j.at("in_channels").get<int64_t>();
        c.image_size = j.at("image_size").get<int64_t>();
        c.pad = j.at("pad").get<int64_t>();
        c.base_channels = j.at("base_channels").get<int64_t>();
        c.channel_mult = j.at("channel_mult").get<std::vector<int64_t>>();
        c.num_res_blocks = j.at("num_res_blocks").get<int64_t>();
        c.latent_channels = j.at("latent_channels").get<int64_t>();
        c.groups = j.at("groups").get<int64_t>();
        c.scale_factor = j.at("scale_factor").get<double>();
        c.latent_clip = j.value("latent_clip", c.latent_clip);
        c.dataset = j.value("dataset", std::string());
        c.class_names = j.value("class_names", std::vector<std::string>{});
        c.training = j.value("training", json::object());
        if (j.contains("latent_norm")) {
            c.latent_shift = j.at("latent_norm").at("shift").get<std::vector<double>>();
            c.latent_scale = j.at("latent_norm").at("scale").get<std::vector<double>>();
        }
    } catch (const json::exception& e) {
        return Error{std::string("autoencoder config: ") + e.what()};
    }
    if (auto st = c.validate(); !st) return Error{st.error()};
    return c;
}

namespace {

// GN-SiLU-conv twice with a skip: the LDM autoencoder's block, without a time embedding.
struct AeResBlockImpl : nn::Module {
    AeResBlockImpl(int64_t in, int64_t out, int64_t groups)
        : norm1(register_module("norm1", nn::GroupNorm(groups, in))),
          conv1(register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)))),
          norm2(register_module("norm2", nn::GroupNorm(groups, out))),
          conv2(register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1)))) {
        if (in != out) skip = register_module("skip", nn::Conv2d(nn::Conv2dOptions(in, out, 1)));
    }
    at::Tensor forward(const at::Tensor& x) {
        const at::Tensor h = conv2(at::silu(norm2(conv1(at::silu(norm1(x))))));
        return (skip ? skip(x) : x) + h;
    }
    nn::GroupNorm norm1;
    nn::Conv2d conv1;
    nn::GroupNorm norm2;
    nn::Conv2d conv2;
    nn::Conv2d skip{nullptr};
};
TORCH_MODULE(AeResBlock);

struct NormActImpl : nn::Module {
    NormActImpl(int64_t ch, int64_t groups) : norm(register_module("norm", nn::GroupNorm(groups, ch))) {}
    at::Tensor forward(const at::Tensor& x) { return at::silu(norm(x)); }
    nn::GroupNorm norm;
};
TORCH_MODULE(NormAct);

struct UpsampleImpl : nn::Module {
    explicit UpsampleImpl(int64_t ch) : conv(register_module("conv", nn::Conv2d(nn::Conv2dOptions(ch, ch, 3).padding(1)))) {}
    at::Tensor forward(const at::Tensor& x) {
        return conv(at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}));
    }
    nn::Conv2d conv;
};
TORCH_MODULE(Upsample);

}  // namespace

AutoencoderImpl::AutoencoderImpl(const AutoencoderConfig& c) : config_(c) {
    const int64_t G = c.groups, L = c.latent_channels;
    const size_t levels = c.channel_mult.size();
    nn::Sequential enc;
    int64_t ch = c.base_channels * c.channel_mult[0];
    enc->push_back(nn::Conv2d(nn::Conv2dOptions(c.in_channels, ch, 3).padding(1)));
    for (size_t i = 0; i < levels; ++i) {
        const int64_t out = c.base_channels * c.channel_mult[i];
        for (int64_t b = 0; b < c.num_res_blocks; ++b) {
            enc->push_back(AeResBlock(ch, out, G));
            ch = out;
        }
        if (i + 1 < levels) enc->push_back(nn::Conv2d(nn::Conv2dOptions(ch, ch, 3).stride(2).padding(1)));
    }
    enc->push_back(AeResBlock(ch, ch, G));
    enc->push_back(NormAct(ch, G));
    enc->push_back(nn::Conv2d(nn::Conv2dOptions(ch, 2 * L, 3).padding(1)));
    encoder_ = register_module("encoder", enc);

    nn::Sequential dec;
    dec->push_back(nn::Conv2d(nn::Conv2dOptions(L, ch, 3).padding(1)));
    dec->push_back(AeResBlock(ch, ch, G));
    for (size_t k = levels; k-- > 0;) {
        const int64_t out = c.base_channels * c.channel_mult[k];
        for (int64_t b = 0; b < c.num_res_blocks; ++b) {
            dec->push_back(AeResBlock(ch, out, G));
            ch = out;
        }
        if (k > 0) dec->push_back(Upsample(ch));
    }
    dec->push_back(NormAct(ch, G));
    dec->push_back(nn::Conv2d(nn::Conv2dOptions(ch, c.in_channels, 3).padding(1)));
    decoder_ = register_module("decoder", dec);
}

std::pair<at::Tensor, at::Tensor> AutoencoderImpl::encode_moments(const at::Tensor& x) {
    const at::Tensor h = encoder_->forward(pad_images(x));
    const int64_t L = config_.latent_channels;
    return {h.narrow(1, 0, L), h.narrow(1, L, L).clamp(-30.0, 20.0)};
}

at::Tensor AutoencoderImpl::pad_images(const at::Tensor& x) const {
    const int64_t p = config_.pad;
    return p > 0 ? at::constant_pad_nd(x, {p, p, p, p}, -1.0) : x;
}

at::Tensor AutoencoderImpl::decode_padded(const at::Tensor& z) { return decoder_->forward(z); }

at::Tensor AutoencoderImpl::decode_raw(const at::Tensor& z) {
    const at::Tensor out = decode_padded(z);
    const int64_t p = config_.pad, s = config_.image_size;
    return p > 0 ? out.narrow(2, p, s).narrow(3, p, s) : out;
}

at::Tensor AutoencoderImpl::encode(const at::Tensor& x) { return scale_latents(encode_moments(x).first); }

at::Tensor AutoencoderImpl::decode(const at::Tensor& z) { return decode_raw(unscale_latents(z)).clamp(-1.0, 1.0); }

namespace {
// [1, L, 1, 1] of a per-channel vector, in `like`'s dtype and device.
at::Tensor per_channel(const std::vector<double>& v, const at::Tensor& like) {
    return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).to(like.options()).view({1, int64_t(v.size()), 1, 1});
}
}  // namespace

at::Tensor AutoencoderImpl::scale_latents(const at::Tensor& raw) const {
    if (config_.latent_scale.empty()) return raw * config_.scale_factor;
    return (raw - per_channel(config_.latent_shift, raw)) * per_channel(config_.latent_scale, raw);
}

at::Tensor AutoencoderImpl::scale_spread(const at::Tensor& raw_std) const {
    if (config_.latent_scale.empty()) return raw_std * config_.scale_factor;
    return raw_std * per_channel(config_.latent_scale, raw_std);
}

at::Tensor AutoencoderImpl::unscale_latents(const at::Tensor& z) const {
    if (config_.latent_scale.empty()) return z / config_.scale_factor;
    return z / per_channel(config_.latent_scale, z) + per_channel(config_.latent_shift, z);
}

namespace {

template <typename F>
at::Tensor batched(const at::Tensor& in, c10::Device device, F&& f) {
    // On the CPU, small batches whose activations stay in the caches: 512 images of 64x32x32
    // float32 are 134 MB a tensor, and the page faults on such fresh buffers cost a third of the
    // time (measured, encoding 8000 images on a 2-core machine: 22.8 s at 512, 16.3 s at 64,
    // 13.3 s at 16).
    const int64_t batch = device.is_cuda() ? 512 : 16;
    torch::NoGradGuard g;
    std::vector<at::Tensor> out;
    for (int64_t s = 0; s < in.size(0); s += batch)
        out.push_back(f(in.narrow(0, s, std::min(batch, in.size(0) - s)).to(device)).to(at::kCPU));
    return at::cat(out, 0);
}

}  // namespace

at::Tensor encode_all(Autoencoder& ae, const at::Tensor& images, c10::Device device) {
    return batched(images, device, [&](const at::Tensor& x) { return ae->encode(x); });
}

std::pair<at::Tensor, at::Tensor> encode_all_moments(Autoencoder& ae, const at::Tensor& images, c10::Device device) {
    const at::Tensor both = batched(images, device, [&](const at::Tensor& x) {
        const auto [mean, logvar] = ae->encode_moments(x);
        return at::cat({mean, at::exp(0.5 * logvar)}, 1);
    });
    const int64_t L = ae->config().latent_channels;
    return {both.narrow(1, 0, L).contiguous(), both.narrow(1, L, L).contiguous()};
}

at::Tensor decode_all(Autoencoder& ae, const at::Tensor& latents, c10::Device device) {
    return batched(latents, device, [&](const at::Tensor& z) { return ae->decode(z); });
}

double measure_latent_scale(Autoencoder& ae, const at::Tensor& images, c10::Device device) {
    const at::Tensor m = batched(images, device, [&](const at::Tensor& x) { return ae->encode_moments(x).first; });
    return 1.0 / m.to(at::kDouble).std().item<double>();
}

double latent_high_frequency_share(const at::Tensor& latents) {
    TORCH_CHECK(latents.dim() == 4 && latents.size(2) % 2 == 0 && latents.size(3) % 2 == 0 && latents.size(2) > 0,
                "latent_high_frequency_share: latents [N,L,h,w] with even h and w");
    const at::Tensor z = latents.to(at::kDouble);
    const at::Tensor centred = z - z.mean({0, 2, 3}, true);
    const at::Tensor low = at::upsample_nearest2d(at::avg_pool2d(centred, {2, 2}), {z.size(2), z.size(3)});
    const double total = centred.pow(2).sum().item<double>();
    return total > 0 ? (centred - low).pow(2).sum().item<double>() / total : 0.0;
}

double psnr(const at::Tensor& a, const at::Tensor& b) {
    const double mse = (a.to(at::kDouble) - b.to(at::kDouble)).pow(2).mean().item<double>();
    return 10.0 * std::log10(4.0 / std::max(mse, 1e-20));
}

Result<Autoencoder> train_autoencoder(AutoencoderConfig c, const AutoencoderTrainConfig& tc, const LabelledData& data,
                                      c10::Device device, Classifier* perceptual,
                                      const std::function<void(const AutoencoderProgress&)>& on_progress,
                                      const std::atomic<bool>* cancel, Autoencoder* init) {
    if (data.x.dim() != 4) return Error{"train-autoencoder: the data must be images"};
    c.in_channels = data.x.size(1);
    c.image_size = data.x.size(2);
    c.dataset = data.name;
    c.class_names = data.class_names;
    c.scale_factor = 1.0;
    if (auto st = c.validate(); !st) return Error{st.error()};
    if (tc.steps < 1 || tc.batch < 1 || !(tc.lr > 0)) return Error{"train-autoencoder: steps, batch and lr must be positive"};
    if (tc.perceptual_weight > 0 && !perceptual) return Error{"train-autoencoder: the perceptual term needs the classifier"};
    if (!(tc.scale_equivariance >= 0) || !std::isfinite(tc.scale_equivariance))
        return Error{"train-autoencoder: the scale-equivariance weight must be finite and >= 0"};
    if (tc.scale_equivariance > 0 && (c.latent_size() % 2 != 0 || c.latent_size() < 2))
        return Error{"train-autoencoder: the scale-equivariance term halves the latents, whose side " +
                     std::to_string(c.latent_size()) + " is not even"};
    at::manual_seed(tc.seed);
    Autoencoder ae(c);
    if (init && *init) {
        // Fine-tuning: the same architecture, tensor by tensor, before anything is trained.
        if (auto st = copy_module_weights(*ae, **init, "train-autoencoder: the starting autoencoder"); !st)
            return Error{st.error()};
    }
    ae->to(device);
    ae->train();
    if (perceptual) {
        (*perceptual)->to(device);
        (*perceptual)->eval();
        for (auto& p : (*perceptual)->parameters()) p.set_requires_grad(false);
    }
    torch::optim::Adam opt(ae->parameters(), torch::optim::AdamOptions(tc.lr).betas({0.5, 0.9}));
    const at::Tensor images = data.x.to(device);
    const int64_t N = images.size(0), B = tc.batch;
    const double pixels = double(c.in_channels * c.image_size * c.image_size);
    auto window = std::chrono::steady_clock::now();
    int64_t window_images = 0;
    int64_t steps_done = 0;
    for (int64_t step = 0; step < tc.steps; ++step, steps_done = step) {
        if (cancel && cancel->load()) break;  // keep what was reached
        at::Generator gen = make_generator(tc.seed * 1000003ULL + uint64_t(step));
        const at::Tensor idx = at::randint(N, {B}, gen, at::TensorOptions().dtype(at::kLong)).to(device);
        const at::Tensor x = images.index_select(0, idx);
        auto [mean, logvar] = ae->encode_moments(x);
        const at::Tensor eps = at::randn(mean.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(device);
        const at::Tensor z = mean + at::exp(0.5 * logvar) * eps;
        const at::Tensor rec = ae->decode_raw(z);
        const at::Tensor l1 = (rec - x).abs().mean();
        // KL(q(z|x) || N(0, I)) summed over latent elements, per pixel, averaged over the batch.
        const at::Tensor kl = (0.5 * (mean.pow(2) + at::exp(logvar) - 1.0 - logvar)).flatten(1).sum(1).mean() / pixels;
        at::Tensor loss = l1 + tc.kl_weight * kl;
        at::Tensor perc;
        if (tc.perceptual_weight > 0) {
            perc = ((*perceptual)->features(rec) - (*perceptual)->features(x).detach()).pow(2).mean();
            loss = loss + tc.perceptual_weight * perc;
        }
        at::Tensor equi;
        if (tc.scale_equivariance > 0) {
            const at::Tensor coarse = ae->decode_padded(at::avg_pool2d(z, {2, 2}));
            equi = (coarse - at::avg_pool2d(ae->pad_images(x), {2, 2})).abs().mean();
            loss = loss + tc.scale_equivariance * equi;
        }
        opt.zero_grad();
        loss.backward();
        opt.step();
        window_images += B;
        if (on_progress && ((step + 1) % tc.log_every == 0 || step + 1 == tc.steps)) {
            const double l = loss.item<double>();
            if (!std::isfinite(l)) return Error{"train-autoencoder: the loss is not finite at step " + std::to_string(step + 1) + " (try a lower learning rate)"};
            const auto now = std::chrono::steady_clock::now();
            const double secs = std::chrono::duration<double>(now - window).count();
            window = now;
            on_progress(AutoencoderProgress{step + 1, tc.steps, l, l1.item<double>(), kl.item<double>(),
                                            perc.defined() ? perc.item<double>() : 0.0,
                                            equi.defined() ? equi.item<double>() : 0.0, secs > 0 ? double(window_images) / secs : 0.0});
            window_images = 0;
        }
    }
    ae->eval();
    const at::Tensor sample = data.x.narrow(0, 0, std::min<int64_t>(N, 10000));
    ae->mutable_config().scale_factor = measure_latent_scale(ae, sample, device);
    steps_done = std::max(steps_done, int64_t(0));
    ae->mutable_config().training = json{{"steps", tc.steps}, {"steps_done", steps_done}, {"batch", tc.batch}, {"lr", tc.lr},
                                         {"kl_weight", tc.kl_weight}, {"perceptual_weight", tc.perceptual_weight},
                                         {"scale_equivariance", tc.scale_equivariance}, {"seed", tc.seed}, {"device", device.str()}};
    return ae;
}

Status save_autoencoder(const std::string& path, Autoencoder& ae) {
    TensorFile file;
    file.metadata["dlab_autoencoder"] = to_json(ae->config()).dump();
    add_network_tensors(file, "ae.", *ae);
    return save_safetensors(path, file);
}

Result<Autoencoder> load_autoencoder(const std::string& path, c10::Device device) {
    auto file = load_safetensors(path);
    if (!file) return Error{file.error()};
    auto meta = file->metadata.find("dlab_autoencoder");
    if (meta == file->metadata.end()) return Error{path + ": not a DiffusionLab autoencoder (no 'dlab_autoencoder' config)"};
    json j = json::parse(meta->second, nullptr, false);
    if (j.is_discarded()) return Error{path + ": the autoencoder config is not valid JSON"};
    auto cfg = autoencoder_config_from_json(j);
    if (!cfg) return Error{path + ": " + cfg.error()};
    Autoencoder ae(cfg.value());
    if (auto st = load_network_tensors(file.value(), "ae.", *ae, path); !st) return Error{st.error()};
    ae->to(device);
    ae->eval();
    return ae;
}

bool is_autoencoder_file(const std::string& path) {
    auto file = load_safetensors(path);
    return file && file->metadata.count("dlab_autoencoder") > 0;
}

}  // namespace dlab
