#include "core/gan/gan_trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <torch/torch.h>

#include "core/io/atomic_file.h"
#include "core/io/model_io.h"
#include "core/io/safetensors.h"
#include "core/runtime/runtime.h"
#include "core/sampling/sampler.h"
#include "core/training/train_support.h"

namespace dlab {

using json = nlohmann::json;
namespace fs = std::filesystem;

json to_json(const GanTrainConfig& c) {
    return json{{"steps", c.steps}, {"batch", c.batch}, {"lr_g", c.lr_g}, {"lr_d", c.lr_d}, {"beta1", c.beta1},
                {"beta2", c.beta2}, {"ema_decay", c.ema_decay}, {"seed", c.seed},
                {"checkpoint_every", c.checkpoint_every}, {"log_every", c.log_every}};
}

GanTrainConfig gan_train_config_from_json(const json& j) {
    GanTrainConfig c;
    c.steps = j.value("steps", c.steps);
    c.batch = j.value("batch", c.batch);
    c.lr_g = j.value("lr_g", c.lr_g);
    c.lr_d = j.value("lr_d", c.lr_d);
    c.beta1 = j.value("beta1", c.beta1);
    c.beta2 = j.value("beta2", c.beta2);
    c.ema_decay = j.value("ema_decay", c.ema_decay);
    c.seed = j.value("seed", c.seed);
    c.checkpoint_every = j.value("checkpoint_every", c.checkpoint_every);
    c.log_every = j.value("log_every", c.log_every);
    return c;
}

double mean_pairwise_distance(const at::Tensor& x) {
    const at::Tensor f = x.flatten(1).to(at::kDouble);
    const int64_t n = f.size(0);
    if (n < 2) return 0;
    const at::Tensor d = at::cdist(f, f);
    return d.sum().item<double>() / double(n * (n - 1));
}

namespace {

std::vector<at::Tensor> all_tensors(torch::nn::Module& m) {
    std::vector<at::Tensor> out = m.parameters();
    for (const auto& b : m.buffers()) out.push_back(b);
    return out;
}

void zero_grads(const std::vector<at::Tensor>& params) {
    for (auto p : params) p.mutable_grad().reset();
}

}  // namespace

Result<GanTrainResult> train_gan(const GanConfig& gc, const GanTrainConfig& tc, const LabelledData& data, c10::Device device,
                                 const std::string& out_dir, TrainStart start, const GanTrainHooks& hooks) {
    if (auto st = gc.validate(); !st) return Error{st.error()};
    if (start == TrainStart::New && holds_training_run(out_dir))
        return Error{"train-gan: " + out_dir + " already holds a training run; continue it with --resume or "
                     "replace it with --overwrite (nothing was changed)"};
    if (tc.steps < 1 || tc.batch < 2) return Error{"train-gan: steps must be positive and batch at least 2"};
    if (!(tc.lr_g > 0) || !(tc.lr_d > 0) || !std::isfinite(tc.lr_g) || !std::isfinite(tc.lr_d))
        return Error{"train-gan: the learning rates must be positive"};
    if (!(tc.beta1 >= 0 && tc.beta1 < 1 && tc.beta2 > 0 && tc.beta2 < 1)) return Error{"train-gan: Adam's betas must be in [0, 1)"};
    if (!(tc.ema_decay >= 0 && tc.ema_decay < 1)) return Error{"train-gan: the EMA decay must be in [0, 1)"};
    if (tc.checkpoint_every < 1 || tc.log_every < 1) return Error{"train-gan: checkpoint and log intervals must be positive"};
    if (data.x.dim() != 4 || data.x.size(0) < 2) return Error{"train-gan: a GAN needs an image data set of at least 2 images"};
    if (data.x.size(1) != gc.channels || data.x.size(2) != gc.image_size || data.x.size(3) != gc.image_size)
        return Error{"train-gan: the data's images are " + std::to_string(data.x.size(1)) + "x" + std::to_string(data.x.size(2)) +
                     "x" + std::to_string(data.x.size(3)) + ", the GAN makes " + std::to_string(gc.channels) + "x" +
                     std::to_string(gc.image_size) + "x" + std::to_string(gc.image_size)};
    if (gc.num_classes != 0 && gc.num_classes != data.num_classes)
        return Error{"train-gan: the GAN has " + std::to_string(gc.num_classes) + " classes, the data " + std::to_string(data.num_classes)};
    // Memory: a batch's activations through both networks (a loose lower bound) against the device.
    const int64_t act = 4 * gc.image_size * gc.image_size * gc.base_channels * 6;
    if (auto st = check_memory_budget("train-gan: a batch", tc.batch, act, device); !st) return Error{st.error() + " (--batch)"};

    at::manual_seed(tc.seed);
    Generator g(gc), g_ema(gc);
    Discriminator d(gc);
    {
        torch::NoGradGuard ng;
        auto src = all_tensors(*g), dst = all_tensors(*g_ema);
        for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
    }
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) return Error{out_dir + ": cannot create the run folder: " + ec.message()};
    AdamW opt_g, opt_d;
    opt_g.b1 = opt_d.b1 = tc.beta1;
    opt_g.b2 = opt_d.b2 = tc.beta2;
    opt_g.init(g->parameters());
    opt_d.init(d->parameters());
    const std::string ckpt = checkpoint_path(out_dir), log_path = out_dir + "/loss.csv";
    int64_t step = 0;
    auto state_tensors = [&](TensorFile& file) {
        add_network_tensors(file, "g.", *g);
        add_network_tensors(file, "d.", *d);
        add_network_tensors(file, "g_ema.", *g_ema);
        for (size_t i = 0; i < opt_g.m.size(); ++i) {
            file.tensors["adam_g_m." + std::to_string(i)] = opt_g.m[i];
            file.tensors["adam_g_v." + std::to_string(i)] = opt_g.v[i];
        }
        for (size_t i = 0; i < opt_d.m.size(); ++i) {
            file.tensors["adam_d_m." + std::to_string(i)] = opt_d.m[i];
            file.tensors["adam_d_v." + std::to_string(i)] = opt_d.v[i];
        }
    };
    if (start == TrainStart::Resume) {
        auto file = load_safetensors(ckpt);
        if (!file) return Error{"resume: " + file.error()};
        const auto meta = file->metadata.find("dlab_gan");
        const auto step_text = file->metadata.find("step");
        if (meta == file->metadata.end() || step_text == file->metadata.end())
            return Error{"resume: " + ckpt + " is not a GAN checkpoint"};
        const json j = json::parse(meta->second, nullptr, false);
        if (j.is_discarded() || !j.contains("gan")) return Error{"resume: " + ckpt + ": its GAN config is not valid JSON"};
        auto saved = gan_config_from_json(j["gan"]);
        if (!saved) return Error{"resume: " + ckpt + ": " + saved.error()};
        if (to_json(saved.value()) != to_json(gc))
            return Error{"resume: " + ckpt + " holds a GAN of another shape (" + to_json(saved.value()).dump() + ")"};
        const auto parsed = parse_count(step_text->second);
        if (!parsed) return Error{"resume: " + ckpt + ": the step '" + step_text->second + "' is not a whole number >= 0"};
        step = *parsed;
        TensorFile expected;
        state_tensors(expected);
        torch::NoGradGuard ng;
        for (auto& [name, t] : expected.tensors) {
            auto it = file->tensors.find(name);
            if (it == file->tensors.end() || it->second.sizes() != t.sizes() || it->second.scalar_type() != t.scalar_type())
                return Error{"resume: " + ckpt + ": tensor '" + name + "' is missing or of another shape"};
            t.copy_(it->second);
        }
        if (auto st = truncate_log(log_path, step); !st) return Error{st.error()};
    } else {
        if (auto st = write_file_atomic(log_path, "step,d_loss,g_loss,d_real_acc,d_fake_acc,diversity_ratio,images_per_s\n"); !st)
            return Error{st.error()};
        fs::remove(ckpt, ec);
        fs::remove(out_dir + "/model.safetensors", ec);
    }
    g->to(device);
    d->to(device);
    g_ema->to(device);
    opt_g.params = g->parameters();
    opt_d.params = d->parameters();
    for (auto* o : {&opt_g, &opt_d}) {
        for (auto& t : o->m) t = t.to(device);
        for (auto& t : o->v) t = t.to(device);
    }
    const at::Tensor images = data.x.to(device), labels = data.labels.to(device);
    const int64_t N = images.size(0), B = tc.batch, C = std::max<int64_t>(1, gc.num_classes);
    // The diversity yardstick: 256 real images and a fixed latent batch for the EMA generator.
    const int64_t probe = std::min<int64_t>(256, N);
    at::Generator probe_gen = make_generator(tc.seed ^ 0x5bd1e995ULL);
    const at::Tensor probe_idx = at::randperm(N, probe_gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, probe);
    const double real_spread = mean_pairwise_distance(data.x.index_select(0, probe_idx));
    const at::Tensor probe_labels = at::arange(probe, at::TensorOptions().dtype(at::kLong)).remainder(C);
    auto diversity = [&]() {
        g_ema->eval();
        const at::Tensor x = gan_generate(*g_ema, probe, probe_labels, tc.seed ^ 0x9e3779b9ULL, probe);
        g_ema->train();
        return real_spread > 0 ? mean_pairwise_distance(x) / real_spread : 0.0;
    };
    int64_t last_good = start == TrainStart::Resume ? step : -1;
    auto save_checkpoint = [&]() -> Status {
        if (!all_finite(all_tensors(*g)) || !all_finite(all_tensors(*d)) || !all_finite(opt_g.m) || !all_finite(opt_g.v) ||
            !all_finite(opt_d.m) || !all_finite(opt_d.v))
            return Status::failure("training stopped at step " + std::to_string(step) + ": the weights are no longer finite" +
                                   (last_good >= 0 ? "; the last good checkpoint (step " + std::to_string(last_good) + ") is kept"
                                                   : "; no checkpoint was written"));
        TensorFile file;
        state_tensors(file);
        json training = to_json(tc);
        training["steps_done"] = step;
        file.metadata["dlab_gan"] = json{{"gan", to_json(gc)}, {"training", training}}.dump();
        file.metadata["step"] = std::to_string(step);
        Status st = save_safetensors(ckpt, file);
        if (st) last_good = step;
        return st;
    };

    GanTrainResult result;
    std::string log_rows;
    const auto t0 = std::chrono::steady_clock::now();
    auto window = t0;
    int64_t window_images = 0, images_this_call = 0;
    g->train();
    d->train();
    g_ema->train();
    try {
        while (step < tc.steps) {
            if (hooks.pause && hooks.pause->load()) {
                const auto paused_at = std::chrono::steady_clock::now();
                while (hooks.pause->load() && !(hooks.cancel && hooks.cancel->load()))
                    std::this_thread::sleep_for(std::chrono::milliseconds(20));
                window += std::chrono::steady_clock::now() - paused_at;  // a pause is not slow training
            }
            if (hooks.cancel && hooks.cancel->load()) {
                result.cancelled = true;
                break;
            }
            const uint64_t k = tc.seed * 1000003ULL + uint64_t(step);
            at::Generator gen = make_generator(k ^ 0x2545f4914f6cdd1dULL);
            const auto i64 = at::TensorOptions().dtype(at::kLong);
            const at::Tensor idx = at::randint(N, {B}, gen, i64).to(device);
            const at::Tensor x = images.index_select(0, idx), y = labels.index_select(0, idx);
            const at::Tensor z = at::randn({B, gc.z_dim}, gen, at::TensorOptions().dtype(at::kFloat)).to(device);
            const at::Tensor yf = at::randint(C, {B}, gen, i64).to(device);
            ++step;
            // The discriminator: real up, fake down.
            const at::Tensor fake = g->forward(z, yf);
            const at::Tensor real_logits = d->forward(x, y), fake_logits = d->forward(fake.detach(), yf);
            const at::Tensor d_loss = hinge_d_loss(real_logits, fake_logits);
            zero_grads(d->parameters());
            d_loss.backward();
            opt_d.step(step, tc.lr_d, 0.0);
            // The generator: fool the updated discriminator.
            const at::Tensor g_logits = d->forward(fake, yf);
            const at::Tensor g_loss = hinge_g_loss(g_logits);
            zero_grads(g->parameters());
            zero_grads(d->parameters());
            g_loss.backward();
            opt_g.step(step, tc.lr_g, 0.0);
            {
                torch::NoGradGuard ng;
                auto src = g->parameters(), dst = g_ema->parameters();
                at::_foreach_mul_(dst, tc.ema_decay);
                at::_foreach_add_(dst, src, 1.0 - tc.ema_decay);
                auto sb = g->buffers(), db = g_ema->buffers();
                for (size_t i = 0; i < sb.size(); ++i) db[i].copy_(sb[i]);
            }
            window_images += B;
            images_this_call += B;
            if (step % tc.log_every == 0 || step == tc.steps) {
                const double ld = d_loss.item<double>(), lg = g_loss.item<double>();
                if (!std::isfinite(ld) || !std::isfinite(lg))
                    return Error{"training stopped at step " + std::to_string(step) + ": a loss is not finite (d " +
                                 std::to_string(ld) + ", g " + std::to_string(lg) + ")" +
                                 (last_good >= 0 ? "; the last good checkpoint (step " + std::to_string(last_good) + ") is kept in " + ckpt
                                                 : "; no checkpoint was written") +
                                 " (try lower learning rates)"};
                GanTrainProgress p;
                p.step = step;
                p.total = tc.steps;
                p.d_loss = ld;
                p.g_loss = lg;
                p.d_real_acc = (real_logits > 0).to(at::kFloat).mean().item<double>();
                p.d_fake_acc = (fake_logits < 0).to(at::kFloat).mean().item<double>();
                p.diversity_ratio = diversity();
                const auto now = std::chrono::steady_clock::now();
                const double secs = std::chrono::duration<double>(now - window).count();
                p.images_per_s = secs > 0 ? double(window_images) / secs : 0;
                p.eta_s = p.images_per_s > 0 ? double(tc.steps - step) * double(B) / p.images_per_s : 0;
                window = now;
                window_images = 0;
                result.d_loss = ld;
                result.g_loss = lg;
                result.diversity_ratio = p.diversity_ratio;
                std::ostringstream row;
                row << step << ',' << ld << ',' << lg << ',' << p.d_real_acc << ',' << p.d_fake_acc << ','
                    << p.diversity_ratio << ',' << p.images_per_s << '\n';
                log_rows += row.str();
                if (hooks.on_progress) hooks.on_progress(p);
            }
            if (hooks.on_snapshot && hooks.snapshot_every > 0 && (step % hooks.snapshot_every == 0 || step == tc.steps)) {
                const auto snap = std::chrono::steady_clock::now();
                g_ema->eval();
                hooks.on_snapshot(step, *g_ema);
                g_ema->train();
                window += std::chrono::steady_clock::now() - snap;
            }
            if (step % tc.checkpoint_every == 0 || step == tc.steps) {
                if (auto st = save_checkpoint(); !st) return Error{st.error()};
                std::ofstream(log_path, std::ios::app) << log_rows;
                log_rows.clear();
            }
        }
    } catch (const std::exception& e) {
        if (!is_out_of_memory(e)) throw;
        return Error{"training stopped at step " + std::to_string(step) + ": out of memory at a batch of " + std::to_string(B) +
                     " on " + device.str() + "; use a batch of " + std::to_string(std::max<int64_t>(2, B / 4)) + " or less (--batch)"};
    }
    if (result.cancelled) {
        if (auto st = save_checkpoint(); !st) return Error{st.error()};
    }
    if (!log_rows.empty()) std::ofstream(log_path, std::ios::app) << log_rows;
    if (result.diversity_ratio == 0 && step > 0) result.diversity_ratio = diversity();
    result.collapsed = result.diversity_ratio < kGanCollapseRatio;
    json training = to_json(tc);
    training["steps_done"] = step;
    training["device"] = device.str();
    training["diversity_ratio"] = result.diversity_ratio;
    training["status"] = result.collapsed ? "collapsed" : "ok";
    g_ema->eval();
    if (auto st = save_gan(out_dir + "/model.safetensors", gc, *g_ema, training); !st) return Error{st.error()};
    result.steps_done = step;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.images_per_s = result.seconds > 0 ? double(images_this_call) / result.seconds : 0;
    return result;
}

}  // namespace dlab
