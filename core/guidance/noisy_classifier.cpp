#include "core/guidance/noisy_classifier.h"

#include <chrono>
#include <cmath>
#include <sstream>

#include <torch/torch.h>

#include "core/io/model_io.h"
#include "core/networks/network.h"
#include "core/networks/network_blocks.h"
#include "core/io/safetensors.h"
#include "core/sampling/sampler.h"

namespace dlab {

namespace nn = torch::nn;
using json = nlohmann::json;

json to_json(const NoisyClassifierConfig& c) {
    ModelConfig mc;  // reuse the schedule's JSON form
    mc.schedule = c.schedule;
    return json{{"format", "diffusionlab-noisy-classifier-1"},
                {"in_channels", c.in_channels}, {"image_size", c.image_size},
                {"base_channels", c.base_channels}, {"channel_mult", c.channel_mult},
                {"num_res_blocks", c.num_res_blocks}, {"attention_resolutions", c.attention_resolutions},
                {"attention_heads", c.attention_heads}, {"groups", c.groups},
                {"num_classes", c.num_classes}, {"dropout", c.dropout},
                {"schedule", to_json(mc)["schedule"]}};
}

Result<NoisyClassifierConfig> noisy_classifier_config_from_json(const json& j) {
    NoisyClassifierConfig c;
    try {
        c.in_channels = j.at("in_channels").get<int64_t>();
        c.image_size = j.at("image_size").get<int64_t>();
        c.base_channels = j.at("base_channels").get<int64_t>();
        c.channel_mult = j.at("channel_mult").get<std::vector<int64_t>>();
        c.num_res_blocks = j.at("num_res_blocks").get<int64_t>();
        c.attention_resolutions = j.at("attention_resolutions").get<std::vector<int64_t>>();
        c.attention_heads = j.at("attention_heads").get<int64_t>();
        c.groups = j.at("groups").get<int64_t>();
        c.num_classes = j.at("num_classes").get<int64_t>();
        c.dropout = j.value("dropout", 0.0);
        // The schedule block has the model file's form.
        json model{{"network", {{"kind", "unet"}, {"in_channels", c.in_channels}, {"num_classes", c.num_classes}}},
                   {"schedule", j.at("schedule")}, {"prediction", "eps"}};
        auto mc = model_config_from_json(model);
        if (!mc) return Error{mc.error()};
        c.schedule = mc->schedule;
    } catch (const json::exception& e) {
        return Error{std::string("classifier config: ") + e.what()};
    }
    NetworkConfig probe;
    probe.in_channels = c.in_channels;
    probe.image_size = c.image_size;
    probe.base_channels = c.base_channels;
    probe.channel_mult = c.channel_mult;
    probe.groups = c.groups;
    probe.attention_heads = c.attention_heads;
    if (auto st = probe.validate(); !st) return Error{"classifier config: " + st.error()};
    if (c.num_classes < 2) return Error{"classifier config: needs at least 2 classes"};
    return c;
}

struct NoisyClassifierImpl::Impl {
    nn::Linear temb1{nullptr}, temb2{nullptr};
    nn::Conv2d conv_in{nullptr};
    struct Stage {
        blocks::ResBlock res{nullptr};
        blocks::Attention attn{nullptr};
        nn::Conv2d down{nullptr};
    };
    std::vector<Stage> stages;
    blocks::ResBlock mid{nullptr};
    blocks::Attention mid_attn{nullptr};
    nn::GroupNorm norm_out{nullptr};
    nn::Linear head{nullptr};
};

NoisyClassifierImpl::NoisyClassifierImpl(const NoisyClassifierConfig& c) : impl_(std::make_shared<Impl>()), cfg_(c) {
    Impl& m = *impl_;
    const int64_t ch0 = c.base_channels, temb = 4 * ch0;
    m.temb1 = register_module("temb1", nn::Linear(ch0, temb));
    m.temb2 = register_module("temb2", nn::Linear(temb, temb));
    m.conv_in = register_module("conv_in", nn::Conv2d(nn::Conv2dOptions(c.in_channels, ch0, 3).padding(1)));
    auto has_attn = [&](int64_t res) {
        for (int64_t r : c.attention_resolutions)
            if (r == res) return true;
        return false;
    };
    int64_t ch = ch0, res = c.image_size;
    for (size_t l = 0; l < c.channel_mult.size(); ++l) {
        const int64_t out = ch0 * c.channel_mult[l];
        for (int64_t b = 0; b < c.num_res_blocks; ++b) {
            const std::string n = "down" + std::to_string(l) + "_res" + std::to_string(b);
            Impl::Stage s;
            s.res = register_module(n, blocks::ResBlock(ch, out, temb, c.groups, c.dropout));
            if (has_attn(res)) s.attn = register_module(n + "_attn", blocks::Attention(out, c.attention_heads, c.groups));
            m.stages.push_back(s);
            ch = out;
        }
        if (l + 1 < c.channel_mult.size()) {
            Impl::Stage s;
            s.down = register_module("down" + std::to_string(l) + "_downsample",
                                     nn::Conv2d(nn::Conv2dOptions(ch, ch, 3).stride(2).padding(1)));
            m.stages.push_back(s);
            res /= 2;
        }
    }
    m.mid = register_module("mid_res", blocks::ResBlock(ch, ch, temb, c.groups, c.dropout));
    m.mid_attn = register_module("mid_attn", blocks::Attention(ch, c.attention_heads, c.groups));
    m.norm_out = register_module("norm_out", nn::GroupNorm(c.groups, ch));
    m.head = register_module("head", nn::Linear(ch, c.num_classes));
}

at::Tensor NoisyClassifierImpl::forward(const at::Tensor& x, const at::Tensor& t) {
    Impl& m = *impl_;
    const at::Tensor emb = m.temb2(at::silu(m.temb1(timestep_embedding(t, cfg_.base_channels))));
    at::Tensor h = m.conv_in(x);
    for (auto& s : m.stages) {
        if (s.res) {
            h = s.res(h, emb);
            if (s.attn) h = s.attn(h);
        } else {
            h = s.down(h);
        }
    }
    h = m.mid_attn(m.mid(h, emb));
    h = at::silu(m.norm_out(h)).mean({2, 3});  // global average pool
    return m.head(h);
}

std::vector<std::pair<int64_t, double>> noisy_accuracy_by_t(NoisyClassifier& net, const LabelledData& data,
                                                            const std::vector<int64_t>& ts, c10::Device device,
                                                            uint64_t seed) {
    torch::NoGradGuard g;
    net->eval();
    const NoiseSchedule sched = NoiseSchedule::create(net->config().schedule).value();
    std::vector<std::pair<int64_t, double>> out;
    const int64_t N = data.x.size(0);
    for (int64_t t : ts) {
        at::Generator gen = make_generator(seed + static_cast<uint64_t>(t));
        int64_t correct = 0;
        for (int64_t i = 0; i < N; i += 1000) {
            const int64_t n = std::min<int64_t>(1000, N - i);
            const at::Tensor x0 = data.x.narrow(0, i, n);
            const at::Tensor eps = at::randn(x0.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
            const at::Tensor tt = at::full({n}, t, at::kLong);
            const at::Tensor xt = sched.add_noise(x0, eps, tt).to(device);
            const at::Tensor logits = net->forward(xt, tt.to(device));
            correct += (logits.argmax(1).cpu() == data.labels.narrow(0, i, n)).sum().item<int64_t>();
        }
        out.emplace_back(t, double(correct) / double(N));
    }
    return out;
}

Result<NoisyClassifier> train_noisy_classifier(const NoisyClassifierConfig& config,
                                               const NoisyClassifierTraining& tr, const LabelledData& train,
                                               c10::Device device,
                                               const std::function<void(const std::string&)>& log,
                                               const std::atomic<bool>* cancel) {
    if (train.x.dim() != 4) return Error{"noisy classifier: needs image data"};
    if (train.num_classes != config.num_classes)
        return Error{"noisy classifier: the config has " + std::to_string(config.num_classes) +
                     " classes but the data has " + std::to_string(train.num_classes)};
    if (tr.steps < 1 || tr.batch < 1 || !(tr.lr > 0)) return Error{"noisy classifier: steps, batch and lr must be positive"};
    auto sched_r = NoiseSchedule::create(config.schedule);
    if (!sched_r) return Error{"noisy classifier: " + sched_r.error()};
    const NoiseSchedule& sched = sched_r.value();
    at::manual_seed(tr.seed);
    NoisyClassifier net(config);
    net->to(device);
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(tr.lr).weight_decay(0.05));
    const at::Tensor x_all = train.x.to(device), y_all = train.labels.to(device);
    const at::Tensor sqrt_ab = sched.alpha_bars().sqrt().to(device, at::kFloat);
    const at::Tensor sqrt_1mab = (1.0 - sched.alpha_bars()).sqrt().to(device, at::kFloat);
    const int64_t N = x_all.size(0), B = tr.batch, T = sched.timesteps();
    at::Generator gen = make_generator(tr.seed);
    const auto i64 = at::TensorOptions().dtype(at::kLong);
    net->train();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < tr.steps; ++step) {
        if (cancel && cancel->load()) return Error{"cancelled"};
        const at::Tensor idx = at::randint(N, {B}, gen, i64).to(device);
        const at::Tensor t = at::randint(T, {B}, gen, i64).to(device);
        at::Tensor x0 = x_all.index_select(0, idx);
        const int64_t dx = at::randint(5, {1}, gen, i64).item<int64_t>() - 2;
        const int64_t dy = at::randint(5, {1}, gen, i64).item<int64_t>() - 2;
        x0 = at::constant_pad_nd(x0, {2, 2, 2, 2}, -1.0).narrow(2, 2 + dy, x0.size(2)).narrow(3, 2 + dx, x0.size(3));
        const at::Tensor eps = at::randn(x0.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(device);
        const at::Tensor xt = sqrt_ab.index_select(0, t).view({B, 1, 1, 1}) * x0 +
                              sqrt_1mab.index_select(0, t).view({B, 1, 1, 1}) * eps;
        const at::Tensor logits = net->forward(xt, t);
        const at::Tensor y = y_all.index_select(0, idx);
        const at::Tensor loss = at::cross_entropy_loss(logits, y);
        const double lr = tr.lr * std::min(1.0, double(step + 1) / double(std::max<int64_t>(1, tr.warmup)));
        for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
        opt.zero_grad();
        loss.backward();
        opt.step();
        if ((step + 1) % tr.log_every == 0 || step + 1 == tr.steps) {
            const double loss_now = loss.item<double>();
            const double batch_acc = (logits.argmax(1) == y).to(at::kFloat).mean().item<double>();
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::ostringstream s;
            s << "step " << step + 1 << "/" << tr.steps << "  loss " << loss_now << "  batch accuracy " << batch_acc
              << "  " << int(double(B) * double(step + 1) / std::max(secs, 1e-9)) << " img/s";
            if (!std::isfinite(loss_now)) return Error{"noisy classifier: the loss is not finite at step " + std::to_string(step + 1)};
            if (log) log(s.str());
        }
    }
    net->eval();
    return net;
}

Status save_noisy_classifier(const std::string& path, NoisyClassifier& net, const json& report) {
    TensorFile f;
    add_network_tensors(f, "", *net);
    json meta = to_json(net->config());
    meta["report"] = report;
    f.metadata["dlab_noisy_classifier"] = meta.dump();
    return save_safetensors(path, f);
}

Result<NoisyClassifier> load_noisy_classifier(const std::string& path, c10::Device device) {
    auto f = load_safetensors(path);
    if (!f) return Error{f.error()};
    auto it = f->metadata.find("dlab_noisy_classifier");
    if (it == f->metadata.end()) return Error{path + ": not a noise-aware classifier (train one with train-classifier --noisy)"};
    const json j = json::parse(it->second, nullptr, false);
    if (j.is_discarded()) return Error{path + ": corrupt classifier metadata"};
    auto cfg = noisy_classifier_config_from_json(j);
    if (!cfg) return Error{path + ": " + cfg.error()};
    NoisyClassifier net(cfg.value());
    if (auto st = load_network_tensors(f.value(), "", *net, path); !st) return Error{st.error()};
    net->to(device);
    net->eval();
    return net;
}

ClassifierGradFn classifier_gradient(NoisyClassifier net, const NoiseSchedule& model_schedule) {
    // Map each model timestep to the classifier's timestep of nearest abar.
    const NoiseSchedule cs = NoiseSchedule::create(net->config().schedule).value();
    const at::Tensor cab = cs.alpha_bars();
    const at::Tensor mab = model_schedule.alpha_bars();
    std::vector<int64_t> map(static_cast<size_t>(model_schedule.timesteps()));
    for (int64_t t = 0; t < model_schedule.timesteps(); ++t)
        map[static_cast<size_t>(t)] = (cab - mab[t]).abs().argmin().item<int64_t>();
    return [net, map](const at::Tensor& x, int64_t t, const at::Tensor& labels) mutable {
        torch::AutoGradMode grad_on(true);
        const at::Tensor xg = x.detach().to(at::kFloat).requires_grad_(true);
        const int64_t tc = map[static_cast<size_t>(std::clamp<int64_t>(t, 0, int64_t(map.size()) - 1))];
        const at::Tensor tt = at::full({x.size(0)}, tc, at::TensorOptions().dtype(at::kLong).device(x.device()));
        const at::Tensor logp = at::log_softmax(net->forward(xg, tt), 1);
        const at::Tensor chosen = logp.gather(1, labels.to(x.device()).view({-1, 1})).sum();
        return torch::autograd::grad({chosen}, {xg})[0].detach().to(x.scalar_type());
    };
}

}  // namespace dlab
