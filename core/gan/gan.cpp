#include "core/gan/gan.h"

#include <cmath>
#include <filesystem>

#include <torch/nn/functional.h>
#include <torch/torch.h>

#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/sampling/sampler.h"
#include "core/training/train_support.h"

namespace dlab {

using json = nlohmann::json;
namespace F = torch::nn::functional;

Status GanConfig::validate() const {
    if (image_size < 8 || image_size > 256 || image_size % 4 != 0)
        return Status::failure("gan: image_size must be a multiple of 4 in 8..256, got " + std::to_string(image_size));
    if (channels != 1 && channels != 3) return Status::failure("gan: channels must be 1 or 3, got " + std::to_string(channels));
    if (num_classes < 0 || num_classes > 1000)
        return Status::failure("gan: num_classes must be in 0..1000, got " + std::to_string(num_classes));
    if (z_dim < 1 || z_dim > 1024) return Status::failure("gan: z_dim must be in 1..1024, got " + std::to_string(z_dim));
    if (base_channels < 4 || base_channels > 512)
        return Status::failure("gan: base_channels must be in 4..512, got " + std::to_string(base_channels));
    return Status::success();
}

int64_t GanConfig::parameter_bytes_bound() const {
    const int64_t b = base_channels, s = image_size / 4;
    const int64_t g = (z_dim + 2 * num_classes + 1) * 4 * b * s * s + 9 * (4 * b * 2 * b + 2 * b * b + b * channels) + 64 * b;
    const int64_t d = 16 * (channels * b + b * 2 * b) + 9 * 2 * b * 4 * b + (num_classes + 2) * 4 * b + 64 * b;
    return 4 * (g + d);
}

json to_json(const GanConfig& c) {
    return json{{"image_size", c.image_size}, {"channels", c.channels}, {"num_classes", c.num_classes},
                {"z_dim", c.z_dim}, {"base_channels", c.base_channels}};
}

Result<GanConfig> gan_config_from_json(const json& j) {
    if (!j.is_object()) return Error{"gan config: not a JSON object"};
    if (auto st = check_json_numbers(j, "gan config"); !st) return Error{st.error()};
    GanConfig c;
    for (auto it = j.begin(); it != j.end(); ++it) {
        int64_t* field = it.key() == "image_size"      ? &c.image_size
                         : it.key() == "channels"      ? &c.channels
                         : it.key() == "num_classes"   ? &c.num_classes
                         : it.key() == "z_dim"         ? &c.z_dim
                         : it.key() == "base_channels" ? &c.base_channels
                                                       : nullptr;
        if (!field) return Error{"gan config: unknown key \"" + it.key() + "\""};
        if (!it->is_number_integer()) return Error{"gan config: \"" + it.key() + "\" must be an integer"};
        *field = it->get<int64_t>();
    }
    if (auto st = c.validate(); !st) return Error{st.error()};
    return c;
}

// ---- spectral norm ---------------------------------------------------------------------------

SpectralNormImpl::SpectralNormImpl(std::vector<int64_t> shape, int64_t stride, int64_t padding)
    : stride_(stride), padding_(padding) {
    int64_t fan_in = 1;
    for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    const double bound = 1.0 / std::sqrt(double(fan_in));
    weight_ = register_parameter("weight", torch::empty(shape).uniform_(-bound, bound));
    bias_ = register_parameter("bias", torch::zeros({shape[0]}));
    u_ = register_buffer("u", F::normalize(torch::randn({shape[0]}), F::NormalizeFuncOptions().dim(0)));
}

at::Tensor SpectralNormImpl::normalized_weight() {
    const at::Tensor w = weight_.view({weight_.size(0), -1});
    at::Tensor u = u_, v;
    {
        torch::NoGradGuard g;
        v = F::normalize(w.t().mv(u), F::NormalizeFuncOptions().dim(0).eps(1e-12));
        if (is_training()) {
            u = F::normalize(w.mv(v), F::NormalizeFuncOptions().dim(0).eps(1e-12));
            u_.copy_(u);
        }
    }
    const at::Tensor sigma = u.dot(w.mv(v));
    return weight_ / sigma;
}

at::Tensor SpectralNormImpl::forward(const at::Tensor& x) {
    const at::Tensor w = normalized_weight();
    if (weight_.dim() == 2) return at::linear(x, w, bias_);
    return at::conv2d(x, w, bias_, {stride_, stride_}, {padding_, padding_});
}

// ---- networks --------------------------------------------------------------------------------

GeneratorImpl::GeneratorImpl(const GanConfig& c) : c_(c) {
    const int64_t b = c.base_channels, s = c.image_size / 4;
    const int64_t in = c.z_dim + (c.num_classes > 0 ? c.num_classes : 0);
    if (c.num_classes > 0) embed_ = register_module("embed", torch::nn::Embedding(c.num_classes, c.num_classes));
    fc_ = register_module("fc", torch::nn::Linear(in, 4 * b * s * s));
    bn0_ = register_module("bn0", torch::nn::BatchNorm2d(4 * b));
    up1_ = register_module("up1", torch::nn::Conv2d(torch::nn::Conv2dOptions(4 * b, 2 * b, 3).padding(1)));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(2 * b));
    up2_ = register_module("up2", torch::nn::Conv2d(torch::nn::Conv2dOptions(2 * b, b, 3).padding(1)));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(b));
    out_ = register_module("out", torch::nn::Conv2d(torch::nn::Conv2dOptions(b, c.channels, 3).padding(1)));
}

at::Tensor GeneratorImpl::forward(const at::Tensor& z, const at::Tensor& y) {
    const int64_t s = c_.image_size / 4;
    at::Tensor h = c_.num_classes > 0 ? at::cat({z, embed_(y)}, 1) : z;
    h = at::relu(bn0_(fc_(h).view({z.size(0), 4 * c_.base_channels, s, s})));
    h = at::relu(bn1_(up1_(at::upsample_nearest2d(h, {2 * s, 2 * s}))));
    h = at::relu(bn2_(up2_(at::upsample_nearest2d(h, {4 * s, 4 * s}))));
    return at::tanh(out_(h));
}

DiscriminatorImpl::DiscriminatorImpl(const GanConfig& c) : c_(c) {
    const int64_t b = c.base_channels;
    c1_ = register_module("c1", SpectralNorm(std::vector<int64_t>{b, c.channels, 4, 4}, 2, 1));
    c2_ = register_module("c2", SpectralNorm(std::vector<int64_t>{2 * b, b, 4, 4}, 2, 1));
    c3_ = register_module("c3", SpectralNorm(std::vector<int64_t>{4 * b, 2 * b, 3, 3}, 1, 1));
    head_ = register_module("head", SpectralNorm(std::vector<int64_t>{1, 4 * b}));
    if (c.num_classes > 0) embed_ = register_module("embed", torch::nn::Embedding(c.num_classes, 4 * b));
}

at::Tensor DiscriminatorImpl::forward(const at::Tensor& x, const at::Tensor& y) {
    at::Tensor h = at::leaky_relu(c1_(x), 0.1);
    h = at::leaky_relu(c2_(h), 0.1);
    h = at::leaky_relu(c3_(h), 0.1);
    h = h.sum({2, 3});  // global sum pooling
    at::Tensor out = head_(h).squeeze(1);
    if (c_.num_classes > 0) out = out + (embed_(y) * h).sum(1);  // the projection term
    return out;
}

at::Tensor hinge_d_loss(const at::Tensor& real_logits, const at::Tensor& fake_logits) {
    return at::relu(1.0 - real_logits).mean() + at::relu(1.0 + fake_logits).mean();
}

at::Tensor hinge_g_loss(const at::Tensor& fake_logits) { return -fake_logits.mean(); }

// ---- files -----------------------------------------------------------------------------------

Status save_gan(const std::string& path, const GanConfig& config, GeneratorImpl& generator, const json& training) {
    if (!all_finite(generator.parameters()) || !all_finite(generator.buffers()))
        return Status::failure(path + ": the generator's weights are not finite; nothing was written");
    TensorFile file;
    add_network_tensors(file, "g.", generator);
    file.metadata["dlab_gan"] = json{{"gan", to_json(config)}, {"training", training}}.dump();
    return save_safetensors(path, file);
}

bool is_gan_file(const std::string& path) {
    auto file = load_safetensors(path);
    return file && file->metadata.count("dlab_gan") > 0;
}

Result<GanModel> load_gan(const std::string& path, c10::Device device) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return Error{path + ": not a regular file"};
    auto file = load_safetensors(path);
    if (!file) return Error{file.error()};
    const auto meta = file->metadata.find("dlab_gan");
    if (meta == file->metadata.end()) return Error{path + ": not a GAN model file (no \"dlab_gan\" metadata)"};
    const json j = json::parse(meta->second, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("gan")) return Error{path + ": its GAN config is not valid JSON"};
    auto config = gan_config_from_json(j["gan"]);
    if (!config) return Error{path + ": " + config.error()};
    // The file must hold at least the generator's share of the bound before anything is built.
    int64_t stored = 0;
    for (const auto& [name, t] : file->tensors) stored += t.numel() * int64_t(t.element_size());
    if (stored * 8 < config->parameter_bytes_bound() / 4)
        return Error{path + ": its config describes a generator far larger than the " + std::to_string(stored) +
                     " bytes of tensors it holds"};
    GanModel m;
    m.config = config.value();
    m.path = path;
    if (j.contains("training") && j["training"].is_object()) m.training = j["training"];
    m.generator = Generator(m.config);
    if (auto st = load_network_tensors(file.value(), "g.", *m.generator, path); !st) return Error{st.error()};
    m.generator->to(device);
    m.generator->eval();
    return m;
}

at::Tensor gan_latent(const GanConfig& config, uint64_t seed, c10::Device device) {
    at::Generator gen = make_generator(seed);
    return at::randn({1, config.z_dim}, gen, at::TensorOptions().dtype(at::kFloat)).to(device);
}

at::Tensor gan_generate(GeneratorImpl& generator, int64_t count, const at::Tensor& labels, uint64_t seed, int64_t batch) {
    torch::NoGradGuard no_grad;
    const GanConfig& c = generator.config();
    const c10::Device device = generator.parameters().front().device();
    at::Generator gen = make_generator(seed);
    at::Tensor z = at::randn({count, c.z_dim}, gen, at::TensorOptions().dtype(at::kFloat));
    at::Tensor y = labels.defined() ? labels.to(at::kLong).cpu()
                                    : at::arange(count, at::TensorOptions().dtype(at::kLong)).remainder(std::max<int64_t>(1, c.num_classes));
    std::vector<at::Tensor> out;
    for (int64_t i = 0; i < count; i += batch) {
        const int64_t n = std::min(batch, count - i);
        out.push_back(generator.forward(z.narrow(0, i, n).to(device), y.narrow(0, i, n).to(device)).cpu());
    }
    return at::cat(out, 0);
}

}  // namespace dlab
