#include "core/io/model_io.h"

#include <cmath>

#include <filesystem>

#include "core/io/model_catalog.h"
#include "core/networks/fused_ops.h"

#include <torch/torch.h>

namespace dlab {

using json = nlohmann::json;

Status check_json_numbers(const json& j, const std::string& where) {
    constexpr double kLimit = 9007199254740992.0;  // 2^53
    if (j.is_number_float()) {
        const double v = j.get<double>();
        if (!(std::abs(v) <= kLimit)) return Status::failure(where + ": the number " + j.dump() + " is out of range");
    } else if (j.is_structured()) {
        for (const auto& [key, value] : j.items())
            if (auto st = check_json_numbers(value, where); !st) return st;
    }
    return Status::success();
}

json to_json(const ModelConfig& c) {
    const NetworkConfig& n = c.network;
    const ScheduleConfig& s = c.schedule;
    json j{
        {"format", "diffusionlab-model-1"},
        {"network",
         {{"kind", to_string(n.kind)}, {"in_channels", n.in_channels}, {"image_size", n.image_size},
          {"base_channels", n.base_channels}, {"channel_mult", n.channel_mult},
          {"num_res_blocks", n.num_res_blocks}, {"attention_resolutions", n.attention_resolutions},
          {"attention_heads", n.attention_heads}, {"num_classes", n.num_classes},
          {"dropout", n.dropout}, {"groups", n.groups}, {"mlp_hidden", n.mlp_hidden},
          {"mlp_layers", n.mlp_layers}, {"learn_sigma", n.learn_sigma}, {"context_dim", n.context_dim},
          {"context_length", n.context_length}, {"frames", n.frames}}},
        {"schedule",
         {{"kind", to_string(s.kind)}, {"timesteps", s.timesteps}, {"beta_start", s.beta_start},
          {"beta_end", s.beta_end}, {"cosine_s", s.cosine_s}, {"max_beta", s.max_beta},
          {"rescale_to_T", s.rescale_to_T}, {"zero_terminal_snr", s.zero_terminal_snr}, {"snr_shift", s.snr_shift}}},
        {"prediction", to_string(c.prediction)},
        {"dataset", c.dataset},
        {"class_names", c.class_names},
        {"training", c.training}};
    if (!c.autoencoder.empty()) j["autoencoder"] = c.autoencoder;
    if (!c.latent_scale.empty()) j["latent_norm"] = json{{"shift", c.latent_shift}, {"scale", c.latent_scale}};
    if (!c.text_encoder.empty()) j["text_encoder"] = c.text_encoder;
    return j;
}

Result<ModelConfig> model_config_from_json(const json& j) {
    ModelConfig c;
    if (auto st = check_json_numbers(j, "config"); !st) return Error{st.error()};
    try {
        const json& n = j.at("network");
        const std::string kind = n.at("kind").get<std::string>();
        if (kind == "unet") c.network.kind = NetworkKind::UNet;
        else if (kind == "mlp") c.network.kind = NetworkKind::Mlp;
        else return Error{"config: unknown network kind '" + kind + "'"};
        c.network.in_channels = n.at("in_channels").get<int64_t>();
        c.network.image_size = n.value("image_size", c.network.image_size);
        c.network.base_channels = n.value("base_channels", c.network.base_channels);
        c.network.channel_mult = n.value("channel_mult", c.network.channel_mult);
        c.network.num_res_blocks = n.value("num_res_blocks", c.network.num_res_blocks);
        c.network.attention_resolutions = n.value("attention_resolutions", c.network.attention_resolutions);
        c.network.attention_heads = n.value("attention_heads", c.network.attention_heads);
        c.network.num_classes = n.at("num_classes").get<int64_t>();
        c.network.dropout = n.value("dropout", c.network.dropout);
        c.network.groups = n.value("groups", c.network.groups);
        c.network.mlp_hidden = n.value("mlp_hidden", c.network.mlp_hidden);
        c.network.mlp_layers = n.value("mlp_layers", c.network.mlp_layers);
        c.network.learn_sigma = n.value("learn_sigma", false);
        c.network.context_dim = n.value("context_dim", int64_t(0));
        c.network.context_length = n.value("context_length", c.network.context_length);
        c.network.frames = n.value("frames", int64_t(0));
        const json& s = j.at("schedule");
        const auto sk = parse_schedule_kind(s.at("kind").get<std::string>());
        if (!sk) return Error{"config: unknown schedule '" + s.at("kind").get<std::string>() + "'"};
        c.schedule.kind = *sk;
        c.schedule.timesteps = s.at("timesteps").get<int64_t>();
        c.schedule.beta_start = s.value("beta_start", c.schedule.beta_start);
        c.schedule.beta_end = s.value("beta_end", c.schedule.beta_end);
        c.schedule.cosine_s = s.value("cosine_s", c.schedule.cosine_s);
        c.schedule.max_beta = s.value("max_beta", c.schedule.max_beta);
        c.schedule.rescale_to_T = s.value("rescale_to_T", false);
        c.schedule.zero_terminal_snr = s.value("zero_terminal_snr", false);
        c.schedule.snr_shift = s.value("snr_shift", 1.0);
        if (!(c.schedule.snr_shift >= kMinSnrShift && c.schedule.snr_shift <= kMaxSnrShift))
            return Error{"config: schedule.snr_shift must be from 0.001 to 1000, got " + s.at("snr_shift").dump()};
        const auto p = parse_prediction_type(j.at("prediction").get<std::string>());
        if (!p) return Error{"config: unknown prediction type '" + j.at("prediction").get<std::string>() + "'"};
        c.prediction = *p;
        c.dataset = j.value("dataset", std::string());
        c.class_names = j.value("class_names", std::vector<std::string>{});
        c.training = j.value("training", json::object());
        c.autoencoder = j.value("autoencoder", std::string());
        c.text_encoder = j.value("text_encoder", std::string());
        if (j.contains("latent_norm")) {
            c.latent_shift = j.at("latent_norm").at("shift").get<std::vector<double>>();
            c.latent_scale = j.at("latent_norm").at("scale").get<std::vector<double>>();
        }
    } catch (const json::exception& e) {
        return Error{std::string("config: ") + e.what()};
    }
    if (auto st = c.network.validate(); !st) return Error{st.error()};
    if (!c.latent_scale.empty() && c.autoencoder.empty()) return Error{"config: latent_norm without an autoencoder"};
    if (auto st = check_channel_norm(c.latent_shift, c.latent_scale, c.network.in_channels, "config: latent_norm"); !st)
        return Error{st.error()};
    return c;
}

void add_network_tensors(TensorFile& file, const std::string& prefix, torch::nn::Module& net) {
    for (const auto& p : net.named_parameters()) file.tensors[prefix + p.key()] = p.value();
    for (const auto& b : net.named_buffers()) file.tensors[prefix + b.key()] = b.value();
}

Status load_network_tensors(const TensorFile& file, const std::string& prefix, torch::nn::Module& net,
                            const std::string& path) {
    torch::NoGradGuard no_grad;
    auto copy = [&](const std::string& name, at::Tensor& dst) -> Status {
        auto it = file.tensors.find(prefix + name);
        if (it == file.tensors.end())
            return Status::failure(path + ": tensor '" + prefix + name + "' is missing (the file does not match its config)");
        const at::Tensor& src = it->second;
        if (src.sizes() != dst.sizes()) {
            std::ostringstream s;
            s << path << ": tensor '" << prefix << name << "' has shape " << src.sizes() << ", expected " << dst.sizes();
            return Status::failure(s.str());
        }
        // float16 is accepted for float32 weights (compact bundled files; see `diffusionlab-cli convert`).
        const bool compact = src.scalar_type() == at::kHalf && dst.scalar_type() == at::kFloat;
        if (src.scalar_type() != dst.scalar_type() && !compact)
            return Status::failure(path + ": tensor '" + prefix + name + "' has dtype " +
                                   std::string(c10::toString(src.scalar_type())) + ", expected " +
                                   std::string(c10::toString(dst.scalar_type())));
        dst.copy_(src);
        return Status::success();
    };
    for (auto& p : net.named_parameters())
        if (auto st = copy(p.key(), p.value()); !st) return st;
    for (auto& b : net.named_buffers())
        if (auto st = copy(b.key(), b.value()); !st) return st;
    return Status::success();
}

Status copy_module_weights(torch::nn::Module& dst, const torch::nn::Module& src, const std::string& what) {
    torch::NoGradGuard no_grad;
    auto pairs = [&](const torch::OrderedDict<std::string, at::Tensor>& to, const torch::OrderedDict<std::string, at::Tensor>& from,
                     std::vector<std::pair<at::Tensor, at::Tensor>>& out) -> Status {
        if (to.size() != from.size())
            return Status::failure(what + ": another architecture (" + std::to_string(from.size()) + " tensors, expected " +
                                   std::to_string(to.size()) + ")");
        for (const auto& d : to) {
            const at::Tensor* s = from.find(d.key());
            if (!s) return Status::failure(what + ": another architecture (tensor " + d.key() + " is missing)");
            if (s->sizes() != d.value().sizes()) {
                std::ostringstream m;
                m << what << ": another architecture (tensor " << d.key() << " has shape " << s->sizes() << ", expected "
                  << d.value().sizes() << ")";
                return Status::failure(m.str());
            }
            out.emplace_back(d.value(), *s);
        }
        return Status::success();
    };
    std::vector<std::pair<at::Tensor, at::Tensor>> todo;
    if (auto st = pairs(dst.named_parameters(true), src.named_parameters(true), todo); !st) return st;
    if (auto st = pairs(dst.named_buffers(true), src.named_buffers(true), todo); !st) return st;
    for (auto& [to, from] : todo) to.copy_(from);
    return Status::success();
}

Status save_model(const std::string& path, const ModelConfig& config, NetworkImpl& model, NetworkImpl* ema) {
    TensorFile file;
    file.metadata["dlab"] = to_json(config).dump();
    add_network_tensors(file, "model.", model);
    if (ema) add_network_tensors(file, "ema.", *ema);
    return save_safetensors(path, file);
}

Result<ModelConfig> stored_model_config(const TensorFile& file, const std::string& path) {
    const auto meta = file.metadata.find("dlab");
    if (meta == file.metadata.end()) return Error{path + ": not a DiffusionLab model (no 'dlab' config in the metadata)"};
    const json j = json::parse(meta->second, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Error{path + ": corrupt config (not a JSON object)"};
    auto config = model_config_from_json(j);  // validates the network's ranges too
    if (!config) return Error{path + ": " + config.error()};
    return config;
}

Result<LoadedModel> load_model(const std::string& path, c10::Device device, bool prefer_ema) {
    auto file = load_safetensors(path);
    if (!file) return Error{file.error()};
    auto config = stored_model_config(file.value(), path);
    if (!config) return Error{config.error()};
    // The config must fit the file before anything is built: a config that asks for more
    // parameters than the file's weights hold is refused without allocating the network.
    const std::string prefix = prefer_ema && (file->tensors.count("ema.conv_out.weight") + file->tensors.count("ema.out.weight") > 0)
                                   ? "ema." : "model.";
    int64_t stored = 0;
    for (const auto& [name, tensor] : file->tensors)
        if (name.rfind(prefix, 0) == 0) stored += tensor.numel();
    if (config->network.min_parameters() > stored)
        return Error{path + ": the config describes a network of at least " + std::to_string(config->network.min_parameters()) +
                     " parameters but the file holds " + std::to_string(stored) + " numbers under '" + prefix +
                     "': the config and the weights do not belong together"};
    auto net = make_network(config->network);
    if (!net) return Error{path + ": " + net.error()};
    LoadedModel loaded;
    loaded.used_ema = prefix == "ema.";
    if (auto st = load_network_tensors(file.value(), prefix, *net.value(), path); !st)
        return Error{st.error()};
    net.value()->to(device);
    net.value()->eval();
    // A model loaded for inference on CUDA runs channels-last where that is on (fused_ops.h): its
    // convolution weights are converted here, once, before anything captures a graph of them.
    if (device.is_cuda() && channels_last_enabled()) net.value()->to_channels_last();
    if (device.is_cuda() && half_inference_dtype() != at::kFloat) net.value()->to_half(half_inference_dtype());
    // A companion file (autoencoder, text encoder): an absolute path, next to the model file, else bundled.
    auto companion = [&](const std::string& name) -> std::string {
        namespace fs = std::filesystem;
        const fs::path wanted(name);
        std::string found;
        if (wanted.is_absolute()) found = wanted.string();
        else if (fs::exists(fs::path(path).parent_path() / wanted)) found = (fs::path(path).parent_path() / wanted).string();
        else if (auto r = resolve_model(name)) found = r.value();
        return !found.empty() && fs::exists(found) ? found : std::string();
    };
    if (config->network.context_dim > 0) {
        if (config->text_encoder.empty()) return Error{path + ": a text-conditional model that names no text encoder"};
        const std::string clip_path = companion(config->text_encoder);
        if (clip_path.empty())
            return Error{path + ": its text encoder '" + config->text_encoder + "' was not found (next to the model or bundled)"};
        auto clip = load_clip(clip_path, device);
        if (!clip) return Error{path + ": " + clip.error()};
        if (clip->config.width != config->network.context_dim || clip->tokenizer.context() != config->network.context_length)
            return Error{path + ": the text encoder " + clip_path + " makes token states of another shape than the network's context"};
        loaded.text_encoder = std::make_shared<Clip>(std::move(clip.value()));
    }
    if (!config->autoencoder.empty()) {
        // Latent diffusion: the autoencoder next to the model file, else a bundled one.
        const std::string ae_path = companion(config->autoencoder);
        if (ae_path.empty())
            return Error{path + ": its autoencoder '" + config->autoencoder + "' was not found (next to the model or bundled)"};
        auto ae = load_autoencoder(ae_path, device);
        if (!ae) return Error{path + ": " + ae.error()};
        if (ae.value()->config().latent_channels != config->network.in_channels ||
            ae.value()->config().latent_size() != config->network.image_size)
            return Error{path + ": the autoencoder " + ae_path + " makes latents of another shape than the network's input"};
        if (!config->latent_scale.empty()) {
            ae.value()->mutable_config().latent_shift = config->latent_shift;
            ae.value()->mutable_config().latent_scale = config->latent_scale;
        }
        loaded.autoencoder = ae.value();
    }
    loaded.config = std::move(config.value());
    loaded.network = net.value();
    loaded.path = path;
    return loaded;
}

}  // namespace dlab
