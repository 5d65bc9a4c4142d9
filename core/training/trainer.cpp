#include "core/training/trainer.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include <torch/torch.h>

#include <torch/version.h>

#include "core/distributed/distributed.h"
#include "core/io/atomic_file.h"
#include "core/networks/fused_ops.h"
#include "core/runtime/runtime.h"
#include "core/text/clip.h"
#include "core/training/losses.h"
#include "core/training/kernel_profile.h"
#include "core/training/train_graph.h"
#include "core/training/train_support.h"
#include "core/sampling/sampler.h"
#include "core/forward/schedule.h"

namespace dlab {

using json = nlohmann::json;
namespace fs = std::filesystem;

json to_json(const TrainConfig& c) {
    return json{{"steps", c.steps}, {"batch", c.batch}, {"lr", c.lr},
                {"weight_decay", c.weight_decay}, {"warmup", c.warmup}, {"grad_clip", c.grad_clip},
                {"ema_decay", c.ema_decay}, {"p_uncond", c.p_uncond},
                {"min_snr_gamma", c.min_snr_gamma}, {"hflip", c.hflip}, {"seed", c.seed},
                {"vlb_weight", c.vlb_weight}, {"bf16", c.bf16}, {"lr_decay", c.lr_decay}, {"lr_final", c.lr_final},
                {"init_from", c.init_from},
                {"checkpoint_every", c.checkpoint_every}, {"log_every", c.log_every}};
}

TrainConfig train_config_from_json(const json& j) {
    TrainConfig c;
    c.steps = j.value("steps", c.steps);
    c.batch = j.value("batch", c.batch);
    c.lr = j.value("lr", c.lr);
    c.weight_decay = j.value("weight_decay", c.weight_decay);
    c.warmup = j.value("warmup", c.warmup);
    c.grad_clip = j.value("grad_clip", c.grad_clip);
    c.ema_decay = j.value("ema_decay", c.ema_decay);
    c.p_uncond = j.value("p_uncond", c.p_uncond);
    c.min_snr_gamma = j.value("min_snr_gamma", c.min_snr_gamma);
    c.hflip = j.value("hflip", c.hflip);
    c.vlb_weight = j.value("vlb_weight", c.vlb_weight);
    c.bf16 = j.value("bf16", c.bf16);
    c.lr_decay = j.value("lr_decay", c.lr_decay);
    c.lr_final = j.value("lr_final", c.lr_final);
    c.init_from = j.value("init_from", c.init_from);
    c.seed = j.value("seed", c.seed);
    c.checkpoint_every = j.value("checkpoint_every", c.checkpoint_every);
    c.log_every = j.value("log_every", c.log_every);
    return c;
}

Status apply_settings_json(const json& j, ModelConfig& mc, TrainConfig& tc) {
    if (!j.is_object()) return Status::failure("settings: the file must hold a JSON object");
    auto check_keys = [](const json& obj, const std::string& where, std::initializer_list<const char*> known) -> Status {
        if (!obj.is_object()) return Status::failure("settings: \"" + where + "\" must be an object");
        for (auto it = obj.begin(); it != obj.end(); ++it) {
            bool ok = false;
            for (const char* k : known) ok = ok || it.key() == k;
            if (!ok) return Status::failure("settings: unknown key \"" + it.key() + "\" in \"" + where + "\"");
        }
        return Status::success();
    };
    if (auto st = check_keys(j, "top level", {"network", "schedule", "prediction", "training"}); !st) return st;
    if (auto st = check_json_numbers(j, "settings"); !st) return st;
    try {
        if (j.contains("network")) {
            const json& n = j["network"];
            if (auto st = check_keys(n, "network", {"base_channels", "channel_mult", "num_res_blocks", "attention_resolutions",
                                                     "attention_heads", "dropout", "groups", "mlp_hidden", "mlp_layers",
                                                     "learn_sigma"}); !st)
                return st;
            NetworkConfig& c = mc.network;
            c.base_channels = n.value("base_channels", c.base_channels);
            c.channel_mult = n.value("channel_mult", c.channel_mult);
            c.num_res_blocks = n.value("num_res_blocks", c.num_res_blocks);
            c.attention_resolutions = n.value("attention_resolutions", c.attention_resolutions);
            c.attention_heads = n.value("attention_heads", c.attention_heads);
            c.dropout = n.value("dropout", c.dropout);
            c.groups = n.value("groups", c.groups);
            c.mlp_hidden = n.value("mlp_hidden", c.mlp_hidden);
            c.mlp_layers = n.value("mlp_layers", c.mlp_layers);
            c.learn_sigma = n.value("learn_sigma", c.learn_sigma);
        }
        if (j.contains("schedule")) {
            const json& s = j["schedule"];
            if (auto st = check_keys(s, "schedule", {"kind", "timesteps", "beta_start", "beta_end", "cosine_s", "max_beta",
                                                      "rescale_to_T", "zero_terminal_snr", "snr_shift"}); !st)
                return st;
            ScheduleConfig& c = mc.schedule;
            if (s.contains("kind")) {
                const auto k = parse_schedule_kind(s["kind"].get<std::string>());
                if (!k) return Status::failure("settings: unknown schedule \"" + s["kind"].get<std::string>() + "\"");
                c.kind = *k;
            }
            c.timesteps = s.value("timesteps", c.timesteps);
            c.beta_start = s.value("beta_start", c.beta_start);
            c.beta_end = s.value("beta_end", c.beta_end);
            c.cosine_s = s.value("cosine_s", c.cosine_s);
            c.max_beta = s.value("max_beta", c.max_beta);
            c.rescale_to_T = s.value("rescale_to_T", c.rescale_to_T);
            c.zero_terminal_snr = s.value("zero_terminal_snr", c.zero_terminal_snr);
            c.snr_shift = s.value("snr_shift", c.snr_shift);
        }
        if (j.contains("prediction")) {
            const auto p = parse_prediction_type(j["prediction"].get<std::string>());
            if (!p) return Status::failure("settings: unknown prediction \"" + j["prediction"].get<std::string>() + "\"");
            mc.prediction = *p;
        }
        if (j.contains("training")) {
            const json& t = j["training"];
            if (auto st = check_keys(t, "training", {"steps", "batch", "lr", "weight_decay", "warmup", "grad_clip",
                                                      "ema_decay", "p_uncond", "min_snr_gamma", "hflip", "seed",
                                                      "checkpoint_every", "log_every", "vlb_weight", "bf16",
                                                      "lr_decay", "lr_final", "init_from"}); !st)
                return st;
            json merged = to_json(tc);
            for (auto it = t.begin(); it != t.end(); ++it) merged[it.key()] = it.value();
            tc = train_config_from_json(merged);
        }
    } catch (const json::exception& e) {
        return Status::failure(std::string("settings: a value has the wrong type (") + e.what() + ")");
    }
    if (auto st = mc.network.validate(); !st) return st;
    return Status::success();
}

double learning_rate(const TrainConfig& tc, int64_t step) {
    const double warm = std::min(1.0, double(step + 1) / double(std::max<int64_t>(1, tc.warmup)));
    if (tc.lr_decay != "cosine" || step < tc.warmup) return tc.lr * warm;
    const double span = double(std::max<int64_t>(1, tc.steps - 1 - tc.warmup));
    const double f = std::min(1.0, double(step - tc.warmup) / span);
    return tc.lr * (tc.lr_final + (1.0 - tc.lr_final) * 0.5 * (1.0 + std::cos(M_PI * f)));
}

const std::vector<std::string>& size_presets() {
    static const std::vector<std::string> names{"tiny", "small", "large"};
    return names;
}

Status apply_size_preset(const std::string& preset, NetworkConfig& n) {
    if (preset == "tiny") {
        n.base_channels = 16;
        n.num_res_blocks = 1;
        n.mlp_hidden = 64;
        n.mlp_layers = 2;
    } else if (preset == "small") {
        n.base_channels = 32;
        n.num_res_blocks = 1;
        n.mlp_hidden = 128;
        n.mlp_layers = 3;
    } else if (preset == "large") {
        n.base_channels = 64;
        n.num_res_blocks = 2;
        n.mlp_hidden = 256;
        n.mlp_layers = 4;
    } else {
        return Status::failure("unknown model size '" + preset + "' (tiny, small or large)");
    }
    return Status::success();
}

void shape_network_for_data(const LabelledData& data, NetworkConfig& n) {
    if (data.x.dim() == 4) {
        n.kind = NetworkKind::UNet;
        n.in_channels = data.x.size(1);
        n.image_size = data.x.size(2);
        n.attention_resolutions = {n.image_size / 4};
    } else {
        n.kind = NetworkKind::Mlp;
        n.in_channels = data.x.size(1);
        n.dropout = 0;
    }
    n.num_classes = data.num_classes;
}

bool holds_training_run(const std::string& dir) {
    std::error_code ec;
    for (const char* name : {"checkpoint.safetensors", "model.safetensors", "loss.csv"})
        if (fs::exists(fs::path(dir) / name, ec)) return true;
    return false;
}

namespace {

// The first of network, schedule and prediction in which `theirs` (held by `where`) differs from
// `mine`, named with both values ("network.base_channels (64 in the checkpoint, 32 asked for)");
// "" when they agree.
std::string config_difference(const ModelConfig& mine_config, const ModelConfig& their_config, const std::string& where) {
    const json mine = to_json(mine_config), theirs = to_json(their_config);
    for (const char* part : {"network", "schedule", "prediction"}) {
        if (mine.at(part) == theirs.at(part)) continue;
        std::string field = part;
        if (mine.at(part).is_object())
            for (const auto& [k, v] : theirs.at(part).items())
                if (!mine.at(part).contains(k) || mine.at(part).at(k) != v) {
                    field = std::string(part) + "." + k + " (" + v.dump() + " in " + where + ", " +
                            (mine.at(part).contains(k) ? mine.at(part).at(k).dump() : "absent") + " asked for)";
                    break;
                }
        if (!mine.at(part).is_object())
            field += " (" + theirs.at(part).dump() + " in " + where + ", " + mine.at(part).dump() + " asked for)";
        return field;
    }
    return {};
}

}  // namespace

Result<TrainResult> train(ModelConfig mc, const TrainConfig& tc, const LabelledData& data,
                          c10::Device device, const std::string& out_dir, TrainStart start,
                          const TrainHooks& hooks, Communicator* comm) {
    const bool resume = start == TrainStart::Resume;
    const int world = comm ? comm->world_size() : 1, rank = comm ? comm->rank() : 0;
    const bool lead = rank == 0;  // the rank that reads and writes the run folder
    const std::string who = world > 1 ? "rank " + std::to_string(rank) + " of " + std::to_string(world) + ": " : "";
    if (tc.batch % world != 0)
        return Error{"train: the batch (" + std::to_string(tc.batch) + ") must be a multiple of the number of ranks (" +
                     std::to_string(world) + ")"};
    if (lead && start == TrainStart::New && holds_training_run(out_dir))
        return Error{"train: " + out_dir + " already holds a training run; continue it with --resume or "
                     "replace it with --overwrite (nothing was changed)"};
    if (tc.steps < 1 || tc.batch < 1) return Error{"train: steps and batch must be positive"};
    if (!(tc.lr > 0) || !std::isfinite(tc.lr)) return Error{"train: the learning rate must be positive"};
    if (!(tc.p_uncond >= 0 && tc.p_uncond < 1)) return Error{"train: p_uncond must be in [0, 1)"};
    if (tc.lr_decay != "constant" && tc.lr_decay != "cosine")
        return Error{"train: unknown learning-rate decay '" + tc.lr_decay + "' (constant or cosine)"};
    if (!(tc.lr_final >= 0 && tc.lr_final <= 1)) return Error{"train: lr_final must be in [0, 1]"};
    if (data.x.size(0) < 1) return Error{"train: the dataset is empty"};
    if (data.x_std.defined() && data.x_std.sizes() != data.x.sizes())
        return Error{"train: the data's spread (x_std) does not have the shape of its examples"};
    if (tc.bf16 && !device.is_cuda())
        return Error{"train: bf16 autocast needs a CUDA device (this run is on " + device.str() + ")"};
    if (mc.network.learn_sigma && !(tc.vlb_weight >= 0))
        return Error{"train: the VLB weight of the hybrid loss must be >= 0"};
    auto schedule_r = NoiseSchedule::create(mc.schedule);
    if (!schedule_r) return Error{"train: " + schedule_r.error()};
    const NoiseSchedule& schedule = schedule_r.value();
    const TextTraining* text = hooks.text;
    const VideoTraining* video = hooks.video;
    if ((mc.network.frames > 0) != (video != nullptr))
        return Error{video ? "train: clips need a video network (frames > 0)" : "train: a video network needs clips"};
    if (video && !video->clips) return Error{"train: no clip source was given"};
    if ((mc.network.context_dim > 0) != (text != nullptr))
        return Error{text ? "train: captions need a text-conditional network (context_dim > 0)"
                          : "train: a text-conditional network needs captions and a text encoder"};
    if (text) {
        if (!text->clip) return Error{"train: no text encoder was given"};
        if (text->clip->config.width != mc.network.context_dim || text->clip->tokenizer.context() != mc.network.context_length)
            return Error{"train: the text encoder's token states (" + std::to_string(text->clip->tokenizer.context()) + " x " +
                         std::to_string(text->clip->config.width) + ") do not fit the network's context (" +
                         std::to_string(mc.network.context_length) + " x " + std::to_string(mc.network.context_dim) + ")"};
        if (!text->levels.defined() || text->levels.dim() != 2 || text->levels.size(0) != data.x.size(0) ||
            text->levels.size(1) != kCaptionAttributes)
            return Error{"train: the caption attribute levels do not match the dataset"};
    }
    if (!video && mc.network.num_classes != data.num_classes && mc.network.num_classes != 0)
        return Error{"train: the network has " + std::to_string(mc.network.num_classes) +
                     " classes but the dataset has " + std::to_string(data.num_classes)};
    at::manual_seed(tc.seed);  // the initial weights depend on the seed alone
    auto net_r = make_network(mc.network);
    if (!net_r) return Error{"train: " + net_r.error()};
    // The memory budget before the run folder is touched: a batch's activations (kept for the
    // backward pass) must fit in half the device's free memory; the message proposes a batch.
    if (auto st = check_memory_budget("train: a batch", tc.batch / world * std::max<int64_t>(1, mc.network.frames),
                                      mc.network.min_activation_bytes(), device);
        !st)
        return Error{st.error() + " (--batch)"};
    auto ema_r = make_network(mc.network);
    Network net = net_r.value(), ema = ema_r.value();
    {
        torch::NoGradGuard g;
        auto src = net->parameters();
        auto dst = ema->parameters();
        for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
    }
    std::error_code ec;
    if (lead) fs::create_directories(out_dir, ec);
    if (ec) return Error{out_dir + ": cannot create the run folder: " + ec.message()};

    mc.dataset = data.name;
    mc.class_names = data.class_names;
    AdamW opt;
    opt.init(net->parameters());
    int64_t step = 0;
    const std::string ckpt = checkpoint_path(out_dir);
    const std::string log_path = out_dir + "/loss.csv";
    if (resume && lead) {
        auto file = load_safetensors(ckpt);
        if (!file) return Error{"resume: " + file.error()};
        // A resumed run keeps the network, schedule and prediction it was trained with: a
        // different one would be trained on silently and written into the model.
        auto saved = stored_model_config(file.value(), ckpt);
        if (!saved) return Error{"resume: " + saved.error()};
        if (const std::string field = config_difference(mc, saved.value(), "the checkpoint"); !field.empty())
            return Error{"resume: " + ckpt + " was trained with another " + field +
                         "; resume with the run's own settings or start a new run"};
        if (auto st = load_network_tensors(file.value(), "model.", *net, ckpt); !st) return Error{st.error()};
        if (auto st = load_network_tensors(file.value(), "ema.", *ema, ckpt); !st) return Error{st.error()};
        torch::NoGradGuard g;
        auto names = net->named_parameters();
        for (size_t i = 0; i < names.size(); ++i) {
            auto m = file->tensors.find("adam_m." + names[i].key());
            auto v = file->tensors.find("adam_v." + names[i].key());
            if (m == file->tensors.end() || v == file->tensors.end())
                return Error{ckpt + ": optimizer state for '" + names[i].key() + "' is missing"};
            opt.m[i].copy_(m->second);
            opt.v[i].copy_(v->second);
        }
        const auto step_text = file->metadata.find("step");
        if (step_text == file->metadata.end()) return Error{ckpt + ": the checkpoint has no 'step' in its metadata"};
        const auto parsed = parse_count(step_text->second);
        if (!parsed) return Error{ckpt + ": the checkpoint's step '" + step_text->second + "' is not a whole number >= 0"};
        step = *parsed;
        if (auto st = truncate_log(log_path, step); !st) return Error{st.error()};
    } else if (lead) {
        if (!tc.init_from.empty()) {
            // Starting weights from a model file of the same network (checked like a resume).
            auto init = load_model(tc.init_from, c10::Device(c10::kCPU));
            if (!init) return Error{"train: --init-from: " + init.error()};
            if (const std::string field = config_difference(mc, init->config, tc.init_from); !field.empty())
                return Error{"train: --init-from " + tc.init_from + " is another model: its " + field +
                             " differs; give the same --config / --size / --prediction as it was trained with"};
            for (Network* dst : {&net, &ema})
                if (auto st = copy_module_weights(**dst, *init->network, "train: --init-from " + tc.init_from); !st)
                    return Error{st.error()};
        }
        if (auto st = write_file_atomic(log_path, "step,loss,lr,images_per_s\n"); !st) return Error{st.error()};
        // An overwritten run's old checkpoint and model go: nothing of it may be resumed by mistake.
        std::error_code rm;
        fs::remove(ckpt, rm);
        fs::remove(out_dir + "/model.safetensors", rm);
    }
    net->to(device);
    ema->to(device);
    // The optimizer's tensors follow the parameters to the device.
    opt.params = net->parameters();
    for (auto& t : opt.m) t = t.to(device);
    for (auto& t : opt.v) t = t.to(device);
    std::unique_ptr<GradientReducer> reducer;
    if (comm) {
        // Every rank starts from rank 0's weights, EMA, optimiser state and step.
        try {
            torch::NoGradGuard g;
            std::vector<at::Tensor> state = net->parameters();
            for (const auto& b : net->buffers()) state.push_back(b);
            for (const auto& p : ema->parameters()) state.push_back(p);
            for (const auto& b : ema->buffers()) state.push_back(b);
            state.insert(state.end(), opt.m.begin(), opt.m.end());
            state.insert(state.end(), opt.v.begin(), opt.v.end());
            for (auto& t : state) t = t.detach();
            state.push_back(at::full({1}, step, at::TensorOptions().dtype(at::kLong).device(device)));
            comm->broadcast(state, 0);
            step = state.back().item<int64_t>();
        } catch (const DistributedError& e) {
            return Error{std::string("train: ") + e.what()};
        }
        reducer = std::make_unique<GradientReducer>(*comm, net->parameters(), std::max<int64_t>(1, hooks.bucket_bytes));
    }

    if (text) {
        // The null prompt (label 0) is the encoder's empty prompt, saved with the weights.
        auto empty = encode_prompts(*text->clip, {""});
        if (!empty) return Error{"train: " + empty.error()};
        const at::Tensor st = empty->states[0].to(device), va = empty->valid[0].to(device);
        net->set_null_prompt(st, va);
        ema->set_null_prompt(st, va);
    }
    const at::Tensor images = data.x.to(device);
    const at::Tensor spreads = data.x_std.defined() ? data.x_std.to(device) : at::Tensor();
    const at::Tensor labels = data.labels.to(device);
    const at::Tensor sqrt_ab = schedule.alpha_bars().sqrt().to(device, at::kFloat);
    const at::Tensor sqrt_1mab = (1.0 - schedule.alpha_bars()).sqrt().to(device, at::kFloat);
    const at::Tensor snr = schedule.snr().to(device, at::kFloat);
    // Hybrid loss tables (float32 on the device): posterior coefficients and the two log variances.
    const at::Tensor coef_x0 = schedule.posterior_mean_coef_x0().to(device, at::kFloat);
    const at::Tensor coef_xt = schedule.posterior_mean_coef_xt().to(device, at::kFloat);
    const at::Tensor log_beta = schedule.betas().log().to(device, at::kFloat);
    const at::Tensor log_beta_tilde = schedule.posterior_log_variance_clipped().to(device, at::kFloat);
    const int64_t N = images.size(0), B = tc.batch, T = schedule.timesteps();
    const int64_t b = B / world, first = rank * b;  // this rank's slice of the global batch
    const int64_t null_class = mc.network.num_classes;
    std::vector<int64_t> bshape(static_cast<size_t>(images.dim()), 1);
    bshape[0] = video ? b * mc.network.frames : b;  // a video step holds b clips of T frames

    int64_t last_good = resume ? step : -1;  // the step of the newest checkpoint on disk
    // The weights, EMA and optimizer state are checked before anything is written: a checkpoint
    // on disk is always one that can be resumed and sampled.
    auto not_finite = [&]() -> std::string {
        return "training stopped at step " + std::to_string(step) + ": the weights are no longer finite (NaN or Inf)" +
               (last_good >= 0 ? "; the last good checkpoint (step " + std::to_string(last_good) + ") is kept in " + ckpt
                               : "; no checkpoint was written") +
               " (try a lower learning rate)";
    };
    auto save_checkpoint = [&]() -> Status {
        if (!all_finite(net->parameters()) || !all_finite(ema->parameters()) || !all_finite(opt.m) || !all_finite(opt.v))
            return Status::failure(not_finite());
        TensorFile file;
        add_network_tensors(file, "model.", *net);
        add_network_tensors(file, "ema.", *ema);
        auto names = net->named_parameters();
        for (size_t i = 0; i < names.size(); ++i) {
            file.tensors["adam_m." + names[i].key()] = opt.m[i];
            file.tensors["adam_v." + names[i].key()] = opt.v[i];
        }
        json training = to_json(tc);
        training["steps_done"] = step;
        mc.training = training;
        file.metadata["dlab"] = to_json(mc).dump();
        file.metadata["step"] = std::to_string(step);
        Status st = save_safetensors(ckpt, file);
        if (st) last_good = step;
        return st;
    };
    // The collectives' failures (another rank stopped) end this rank with a message saying so.
    auto lost_contact = [&](const DistributedError& e) {
        return Error{"training stopped at step " + std::to_string(step) + ": " + e.what() +
                     (lead && last_good >= 0 ? "; the last checkpoint (step " + std::to_string(last_good) + ") is kept in " + ckpt
                                             : "")};
    };

    // The loss of a batch (x0 [b, ...], t [b], eps like x0, y the labels or undefined), shared by the
    // eager loop and the CUDA graph; under a graph the autocast weight cache is off (a captured
    // kernel must not read a cache freed after the capture).
    bool autocast_cache = true;
    auto batch_loss = [&](const at::Tensor& x0, const at::Tensor& t, const at::Tensor& eps, const at::Tensor& y) -> at::Tensor {
        const at::Tensor a = sqrt_ab.index_select(0, t).view(bshape), s = sqrt_1mab.index_select(0, t).view(bshape);
        const at::Tensor xt = a * x0 + s * eps;
        at::Tensor target = mc.prediction == PredictionType::Eps ? eps
                            : mc.prediction == PredictionType::X0 ? x0
                                                                  : a * eps - s * x0;
        at::Tensor full_out;
        {
            CudaBf16Autocast autocast(tc.bf16, autocast_cache);
            full_out = net->forward(xt, t, y);
        }
        full_out = full_out.to(at::kFloat);
        const int64_t C = x0.size(1);
        const at::Tensor out = full_out.narrow(1, 0, C);
        at::Tensor per = (out - target).pow(2).flatten(1).mean(1);
        if (tc.min_snr_gamma > 0) {
            const at::Tensor r = snr.index_select(0, t);
            const at::Tensor w = mc.prediction == PredictionType::Eps ? at::clamp_max(r, tc.min_snr_gamma) / r
                                 : mc.prediction == PredictionType::V ? at::clamp_max(r, tc.min_snr_gamma) / (r + 1)
                                                                      : at::clamp_max(r, tc.min_snr_gamma);
            per = per * w;
        }
        if (mc.network.learn_sigma) {
            // L_vlb term (bits per dimension) trains only the variance: the mean is detached.
            const X0Eps pred = schedule.split_prediction(mc.prediction, out.detach(), xt, t);
            const at::Tensor cx0 = coef_x0.index_select(0, t).view(bshape);
            const at::Tensor cxt = coef_xt.index_select(0, t).view(bshape);
            const at::Tensor mean_q = cx0 * x0 + cxt * xt;
            const at::Tensor mean_p = cx0 * pred.x0 + cxt * xt;
            const at::Tensor lv_q = log_beta_tilde.index_select(0, t).view(bshape);
            const at::Tensor lv_p = learned_log_variance(full_out.narrow(1, C, C),
                                                         log_beta.index_select(0, t).view(bshape), lv_q);
            const at::Tensor kl = normal_kl(mean_q, lv_q, mean_p, lv_p).flatten(1).mean(1);
            // Decoder term at t = 0: images are 8-bit data (discretised); points are continuous.
            const at::Tensor nll = (x0.dim() == 4 ? -discretized_gaussian_log_likelihood(x0, mean_p, 0.5 * lv_p)
                                                  : 0.5 * (std::log(2.0 * M_PI) + lv_p + (x0 - mean_p).pow(2) * at::exp(-lv_p)))
                                       .flatten(1).mean(1);
            const at::Tensor vlb = at::where(t == 0, nll, kl) / std::log(2.0);
            // L_vlb = T E_t[L_t]: weight w on the whole bound is w * T on one sampled term.
            per = per + tc.vlb_weight * double(T) * vlb;
        }
        return per.mean();
    };
    // Images (flipped where drawn) and labels (the null class where dropped) of a step's draws.
    auto plain_batch = [&](const StepDraws& d) -> std::pair<at::Tensor, at::Tensor> {
        at::Tensor x0 = images.index_select(0, d.idx);
        if (spreads.defined()) x0 = x0 + spreads.index_select(0, d.idx) * d.noise;  // a fresh draw of each posterior
        if (tc.hflip && x0.dim() == 4) x0 = at::where(d.flip.view({b, 1, 1, 1}), x0.flip({3}), x0);
        at::Tensor y;
        if (null_class > 0) {
            const at::Tensor y0 = labels.index_select(0, d.idx);
            y = at::where(d.drop, at::full_like(y0, null_class), y0);
        }
        return {x0, y};
    };

    std::vector<at::Tensor> ema_params = ema->parameters();
    net->train();
    // The whole step as one CUDA graph where it can be (plain image or point batches on one CUDA
    // device); captions, clips and data-parallel reductions stay eager.
    std::unique_ptr<TrainStepGraph> graph;
    if (!text && !video && !comm && TrainStepGraph::usable(device)) {
        // Channels-last training (fused_ops.h: train_channels_last_enabled): the network runs NHWC,
        // so cuDNN's convolutions need no layout transposes around them and the fused GroupNorm
        // reads NHWC in place. The moments and the EMA weights take each parameter's layout (the
        // fused AdamW and the EMA's foreach ops want matching strides). Checkpoints are unchanged:
        // they are written in the plain layout.
        if (train_channels_last_enabled() && !tc.bf16 && ema_params.size() == opt.params.size() &&
            net->to_channels_last()) {
            torch::NoGradGuard g;
            auto like = [](at::Tensor& t, const at::Tensor& p) {
                if (t.sizes() == p.sizes() && t.strides() != p.strides()) t.set_data(at::empty_like(p).copy_(t));
            };
            for (size_t i = 0; i < opt.params.size(); ++i) {
                like(opt.m[i], opt.params[i]);
                like(opt.v[i], opt.params[i]);
                like(ema_params[i], opt.params[i]);
            }
        }
        // DLAB_PROFILE_OPS=1: the same step (layout included) eagerly, so the profile can tie each
        // kernel to the operator that launched it.
        if (!profile_by_operator_asked() || profile_steps_asked() == 0) {
            autocast_cache = false;
            graph = std::make_unique<TrainStepGraph>(
                [&](const StepDraws& d) {
                    auto [x0, y] = plain_batch(d);
                    return batch_loss(x0, d.t, d.eps, y);
                },
                net, opt, ema_params, tc.grad_clip, tc.weight_decay, device);
        }
    }
    TrainResult result;
    std::string log_rows;
    const auto t0 = std::chrono::steady_clock::now();
    auto window_start = t0;
    int64_t window_images = 0, images_this_call = 0;
    int64_t windows_logged = 0, steady_images = 0;  // steady_images_per_s: the windows after the first
    double steady_secs = 0;
    double last_ips = 0;
    // Ranks stop together: a data-parallel run stops at the log step after any rank was asked to.
    bool stop_agreed = false;
    auto asked_to_stop = [&] { return hooks.cancel && hooks.cancel->load(); };
    auto cancelled = [&] { return comm ? stop_agreed : asked_to_stop(); };
    // DLAB_PROFILE_STEPS=N: the kernels (CUDA) or operators (CPU) of N steps after 30 warm ones, on stderr.
    const int64_t profile_n = profile_steps_asked();
    const int64_t profile_from = step + 30;
    KernelProfile profile;
    auto profile_start = std::chrono::steady_clock::now();
    // Out of device memory in a step (a batch the budget let through, or memory another process
    // took): the run stops with the size that failed; the last checkpoint and its loss rows stay.
    try {
        while (step < tc.steps) {
            if (profile_n > 0 && step == profile_from) {
                if (device.is_cuda()) torch::cuda::synchronize();
                if (const std::string why = profile.start(device.is_cuda(), profile_by_operator_asked()); !why.empty()) std::cerr << "diffusionlab: " << why << '\n';
                profile_start = std::chrono::steady_clock::now();
            }
            if (!comm && hooks.pause && hooks.pause->load() && !cancelled()) {
                const auto paused_at = std::chrono::steady_clock::now();
                while (hooks.pause->load() && !cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
                window_start += std::chrono::steady_clock::now() - paused_at;  // a pause is not slow training
            }
            if (cancelled()) {
                result.cancelled = true;
                break;
            }
            // Every random choice of step k comes from (seed, k): resuming reproduces the same run.
            // A data-parallel rank draws the whole global batch and keeps its slice of it.
            const uint64_t k = tc.seed * 1000003ULL + static_cast<uint64_t>(step);
            at::manual_seed(k + 0x51ed27ULL * static_cast<uint64_t>(rank));  // dropout (rank 0: as one process)
            at::Generator gen = make_generator(k ^ 0x9e3779b97f4a7c15ULL);
            const auto i64 = at::TensorOptions().dtype(at::kLong);
            const auto f32 = at::TensorOptions().dtype(at::kFloat);
            StepDraws draws;
            draws.idx = at::randint(N, {B}, gen, i64).narrow(0, first, b);
            draws.t = at::randint(T, {B}, gen, i64).narrow(0, first, b);
            std::vector<int64_t> global_shape = images.sizes().vec();
            global_shape[0] = B;
            draws.eps = at::randn(global_shape, gen, f32).narrow(0, first, b);
            draws.drop = (at::rand({B}, gen, f32) < tc.p_uncond).narrow(0, first, b);
            draws.flip = (at::rand({B}, gen, f32) < 0.5).narrow(0, first, b);
            if (spreads.defined()) draws.noise = at::randn(global_shape, gen, f32).narrow(0, first, b);
            const bool log_now = (step + 1) % tc.log_every == 0 || step + 1 == tc.steps;
            const double lr = learning_rate(tc, step);
            const double ema_d = std::min(tc.ema_decay, double(1 + step) / double(10 + step));
            at::Tensor loss;
            if (graph) {
                loss = graph->step(draws, lr, step + 1, ema_d);
                if (!loss.defined()) {  // it declined, changing nothing: this step and the rest run eagerly
                    graph.reset();
                    autocast_cache = true;
                }
            }
            if (!loss.defined()) {
                StepDraws on_device{draws.idx.to(device), draws.t.to(device), draws.eps.to(device), draws.drop.to(device),
                                    draws.flip.to(device), draws.noise.defined() ? draws.noise.to(device) : at::Tensor()};
                at::Tensor x0, y;
                if (video) {
                    // Whole clips: every frame of a clip shares its t, its label and its dropout.
                    const int64_t F = mc.network.frames;
                    auto [frames, clip_labels] = video->clips(k, B);
                    x0 = frames.narrow(0, first * F, b * F).to(device, at::kFloat);
                    on_device.eps = at::randn(frames.sizes(), gen, f32).narrow(0, first * F, b * F).to(device);
                    on_device.t = on_device.t.repeat_interleave(F);
                    const at::Tensor yc = clip_labels.narrow(0, first, b).to(device);
                    y = at::where(on_device.drop, at::full_like(yc, null_class), yc).repeat_interleave(F);
                } else {
                    std::tie(x0, y) = plain_batch(on_device);
                }
                if (text) {
                    // Captions of this rank's slice, each drawn from (seed, step, position in the global batch).
                    const at::Tensor lab = data.labels.index_select(0, draws.idx).contiguous();
                    const at::Tensor lev = text->levels.index_select(0, draws.idx).to(at::kLong).contiguous();
                    std::vector<std::string> caps;
                    for (int64_t i = 0; i < b; ++i)
                        caps.push_back(make_caption(lab[i].item<int64_t>(), lev.data_ptr<int64_t>() + 3 * i,
                                                    k * 131ULL + static_cast<uint64_t>(first + i), text->held_out));
                    auto ids = text->clip->tokenizer.encode_batch(caps);
                    if (!ids) return Error{"train: " + ids.error()};
                    const PromptStates ps = encode_prompt_ids(*text->clip, ids.value());
                    net->set_prompts(ps.states.to(device), ps.valid.to(device));
                    const at::Tensor which = at::arange(1, b + 1, i64).to(device);
                    y = at::where(on_device.drop, at::zeros_like(which), which);
                }
                loss = batch_loss(x0, on_device.t, on_device.eps, y);
                net->zero_grad();
                if (reducer) reducer->prepare();
                loss.backward();
                if (reducer) {
                    try {
                        reducer->finish();  // .grad = the mean over ranks: the global batch's gradient
                    } catch (const DistributedError& e) {
                        return lost_contact(e);
                    }
                }
                if (tc.grad_clip > 0) clip_gradients(opt.params, tc.grad_clip);
                opt.step(step + 1, lr, tc.weight_decay);
                {
                    torch::NoGradGuard g;
                    at::_foreach_mul_(ema_params, ema_d);
                    at::_foreach_add_(ema_params, opt.params, 1 - ema_d);
                }
            }
            ++step;
            if (profile.running() && step == profile_from + profile_n) {
                if (device.is_cuda()) torch::cuda::synchronize();
                const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - profile_start).count();
                std::cerr << profile.stop(profile_n, wall);
            }
            window_images += B;
            images_this_call += B;
            if (log_now) {
                at::Tensor reported = loss.detach().reshape({1}).to(at::kFloat);
                if (comm) {
                    try {
                        // The global batch's loss and whether any rank was asked to stop.
                        std::vector<at::Tensor> v{at::cat({reported, at::full({1}, asked_to_stop() ? 1.0f : 0.0f, reported.options())})};
                        comm->allreduce_sum(v);
                        reported = v[0].narrow(0, 0, 1) / double(world);
                        stop_agreed = v[0][1].item<double>() > 0;
                    } catch (const DistributedError& e) {
                        return lost_contact(e);
                    }
                }
                const double l = reported.item<double>();  // syncs with the device only when logging
                if (!std::isfinite(l)) {
                    return Error{"training stopped at step " + std::to_string(step) + ": the loss is " +
                                 (std::isnan(l) ? "NaN" : "infinite") +
                                 (last_good >= 0 ? "; the last good checkpoint (step " + std::to_string(last_good) +
                                                       ") is kept in " + ckpt
                                                 : "; no checkpoint was written") +
                                 " (try a lower learning rate)"};
                }
                const auto now = std::chrono::steady_clock::now();
                const double secs = std::chrono::duration<double>(now - window_start).count();
                last_ips = secs > 0 ? double(window_images) / secs : 0;
                if (windows_logged++ > 0) {
                    steady_images += window_images;
                    steady_secs += secs;
                }
                window_start = now;
                window_images = 0;
                result.last_loss = l;
                std::ostringstream row;
                row << step << ',' << l << ',' << lr << ',' << last_ips << '\n';
                log_rows += row.str();
                if (hooks.on_progress && lead) {
                    const double eta = last_ips > 0 ? double(tc.steps - step) * double(B) / last_ips : 0;
                    hooks.on_progress(TrainProgress{step, tc.steps, l, lr, last_ips, eta});
                }
            }
            if (lead && hooks.on_snapshot && hooks.snapshot_every > 0 && (step % hooks.snapshot_every == 0 || step == tc.steps)) {
                const auto snap_start = std::chrono::steady_clock::now();
                ema->eval();
                {
                    torch::NoGradGuard g;
                    hooks.on_snapshot(step, mc, ema);
                }
                window_start += std::chrono::steady_clock::now() - snap_start;
            }
            if (lead && (step % tc.checkpoint_every == 0 || step == tc.steps)) {
                if (auto st = save_checkpoint(); !st) return Error{st.error()};
                std::ofstream(log_path, std::ios::app) << log_rows;
                log_rows.clear();
            }
        }
    } catch (const std::exception& e) {
        if (!is_out_of_memory(e)) throw;
        return Error{who + "training stopped at step " + std::to_string(step) + ": out of memory at a batch of " +
                     std::to_string(b) + " on " + device.str() +
                     (last_good >= 0 ? "; the last checkpoint (step " + std::to_string(last_good) + ") is kept in " + ckpt
                                     : "; no checkpoint was written") +
                     "; use a batch of " + std::to_string(std::max<int64_t>(world, B / 4 / world * world)) + " or less (--batch)"};
    }
    result.steps_done = step;
    result.steady_images_per_s = steady_secs > 0 ? double(steady_images) / steady_secs : 0;
    if (reducer) {
        result.buckets = reducer->bucket_count();
        result.overlapped_buckets = reducer->overlapped_last_step();
    }
    if (!lead) {  // rank 0 writes the run folder
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        result.images_per_s = result.seconds > 0 ? double(images_this_call) / result.seconds : 0;
        return result;
    }
    if (!log_rows.empty() && !result.cancelled) std::ofstream(log_path, std::ios::app) << log_rows;
    if (result.cancelled) {
        // Keep what was reached: a checkpoint at the current step.
        if (auto st = save_checkpoint(); !st) return Error{st.error()};
        std::ofstream(log_path, std::ios::app) << log_rows;
    }
    json training = to_json(tc);
    training["steps_done"] = step;
    training["device"] = device.str();
    if (world > 1) training["ranks"] = world;
    mc.training = training;
    // The model file for sampling holds the EMA weights only (the checkpoint keeps both).
    if (!all_finite(ema->parameters())) return Error{not_finite()};
    if (auto st = save_model(out_dir + "/model.safetensors", mc, *ema); !st) return Error{st.error()};
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.images_per_s = result.seconds > 0 ? double(images_this_call) / result.seconds : 0;
    return result;
}

}  // namespace dlab
