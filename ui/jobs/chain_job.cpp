#include "ui/jobs/chain_job.h"

#include <chrono>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/data/datasets.h"
#include "core/sampling/generate.h"
#include "core/runtime/runtime.h"
#include "core/text/clip.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

ReverseChainJob::ReverseChainJob(std::shared_ptr<const LabModel> lab, std::shared_ptr<GuidanceControl> guidance,
                                 SamplingWorker* worker)
    : m_lab(std::move(lab)), m_guidance(std::move(guidance)), m_worker(worker) {}

void ReverseChainJob::prepare(const ChainSettings& s) {
    const ModelConfig& c = m_lab->config();
    SamplerConfig sc;
    sc.kind = s.sampler;
    sc.steps = s.steps;
    sc.eta = s.sampler == SamplerKind::Ddpm ? 1.0 : s.eta;
    sc.spacing = s.spacing;
    sc.clip_x0 = m_lab->isImage();
    if (m_lab->model->autoencoder) sc.clip_value = m_lab->model->autoencoder->config().latent_clip;  // unit-variance latents
    auto sampler = make_sampler(m_lab->schedule, sc);
    if (!sampler) throw std::runtime_error(sampler.error());
    m_sampler = std::move(sampler.value());
    m_settings = s;
    m_guidance->set_scale(s.guidance);
    const int64_t C = c.network.num_classes;
    at::Tensor y;
    if (C > 0) y = at::full({1}, s.classIndex < 0 ? C : std::min<int64_t>(s.classIndex, C - 1), at::kLong).to(m_lab->device);
    Network net = m_lab->model->network;
    // Text models: the prompt (and a negative one) go into the network's prompt table; label 1 is
    // the prompt, 0 the null (or negative) prompt. An empty prompt samples unconditionally.
    const bool text = c.network.context_dim > 0 && m_lab->model->text_encoder;
    const bool prompted = text && !s.prompt.trimmed().isEmpty();
    m_tokenPositions.clear();
    m_tokens.clear();
    if (text) {
        Clip& clip = *m_lab->model->text_encoder;
        auto enc = encode_prompts(clip, {s.prompt.trimmed().toStdString()});
        if (!enc) throw std::runtime_error(enc.error());
        at::Tensor neg, negValid;
        if (!s.negativePrompt.trimmed().isEmpty()) {
            auto n = encode_prompts(clip, {s.negativePrompt.trimmed().toStdString()});
            if (!n) throw std::runtime_error("negative " + n.error());
            neg = n->states.to(m_lab->device);
            negValid = n->valid.to(m_lab->device);
        }
        net->set_prompts(enc->states.to(m_lab->device), enc->valid.to(m_lab->device), neg, negValid);
        net->record_attention(prompted);
        if (prompted) {
            const at::Tensor ids = clip.tokenizer.encode(s.prompt.trimmed().toStdString()).value();
            for (int64_t j = 0; j < ids.size(0); ++j) {
                const int64_t id = ids[j].item<int64_t>();
                if (id == Tokenizer::kPad || id == Tokenizer::kBos || id == Tokenizer::kEos) continue;
                m_tokenPositions.push_back(j);
                m_tokens << QString::fromStdString(clip.tokenizer.words()[size_t(id)]);
            }
            y = at::ones({1}, at::TensorOptions().dtype(at::kLong).device(m_lab->device));
        }
    }
    ModelFn fn = model_function(net, m_lab->graphed);
    RawDenoiser raw;
    if (prompted) {
        raw = classifier_free_guidance(fn, y, 0, m_guidance,
                                       [this](int64_t, double, const at::Tensor& oc, const at::Tensor& ou) {
                                           m_outC = oc;
                                           m_outU = ou;
                                       });
    } else if (C > 0 && s.classIndex >= 0) {
        raw = classifier_free_guidance(fn, y, C, m_guidance,
                                       [this](int64_t, double, const at::Tensor& oc, const at::Tensor& ou) {
                                           m_outC = oc;
                                           m_outU = ou;
                                       });
    } else {
        raw = plain_denoiser(fn, y);
    }
    m_denoise = make_denoiser(raw, m_lab->schedule, c.prediction);
    m_guidance->set_classifier_scale(s.classifierScale);
    if (m_lab->classifierGrad && C > 0 && s.classIndex >= 0) {
        m_denoise = add_classifier_guidance(m_denoise, m_lab->classifierGrad, y, m_guidance,
                                            [this](int64_t, double, const at::Tensor& g) { m_grad = g; });
    }
}

void ReverseChainJob::begin(const ChainSettings& settings) {
    prepare(settings);
    m_gen.emplace(make_generator(settings.seed));
    const NetworkConfig& n = m_lab->config().network;
    std::vector<int64_t> shape = n.kind == NetworkKind::UNet
                                     ? std::vector<int64_t>{1, n.in_channels, n.image_size, n.image_size}
                                     : std::vector<int64_t>{1, n.in_channels};
    m_x = at::randn(shape, *m_gen, at::TensorOptions().dtype(at::kFloat)).to(m_lab->device);
    m_record.clear();
    m_index = 0;
    if (settings.realImage < 0) return;
    try {
        startFromRealImage(settings, shape);
    } catch (...) {
        m_sampler.reset();  // no half-started chain that a later Play would run from pure noise
        throw;
    }
}

void ReverseChainJob::startFromRealImage(const ChainSettings& settings, const std::vector<int64_t>& shape) {
    const auto& ae = m_lab->model->autoencoder;
    if (auto st = check_starts_from_fashion_mnist(*m_lab->model); !st)
        throw std::runtime_error("Starting from a Fashion-MNIST test image " + st.error());
    if (settings.realT < 0 || settings.realT >= m_lab->schedule.timesteps())
        throw std::runtime_error("The starting timestep must be within 0.." + std::to_string(m_lab->schedule.timesteps() - 1));
    if (!m_testImages.defined()) {
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!test) throw std::runtime_error("Starting from a test image: " + test.error());
        m_testImages = test->x;
    }
    if (settings.realImage >= m_testImages.size(0))
        throw std::runtime_error("There are " + std::to_string(m_testImages.size(0)) + " test images (0.." +
                                 std::to_string(m_testImages.size(0) - 1) + ")");
    c10::NoGradGuard ng;
    at::Tensor x0 = m_testImages.narrow(0, settings.realImage, 1).to(m_lab->device);
    if (ae) {
        Autoencoder enc = ae;  // a handle to the same module (encode is not const)
        x0 = enc->encode(x0);
    }
    if (x0.sizes().vec() != shape) throw std::runtime_error("The test image does not fit this model's input");
    // The sampler's first timestep at or below realT (else its last) and x_t there, with the chain's noise.
    const int start = int(first_step_at_or_below(m_sampler->timesteps(), settings.realT));
    const at::Tensor t = at::full({1}, m_sampler->timesteps()[size_t(start)], at::TensorOptions().dtype(at::kLong).device(m_lab->device));
    m_x = m_lab->schedule.add_noise(x0, m_x, t);
    m_record.assign(size_t(start), at::Tensor());
    m_index = start;
}

bool ReverseChainJob::fork(int index, const ChainSettings& settings) {
    if (!m_sampler || index < 0 || index >= int(m_record.size()) || !m_record[size_t(index)].defined()) return false;
    const int64_t t = m_sampler->timesteps()[size_t(index)];
    const at::Tensor x = m_record[size_t(index)];
    prepare(settings);
    // Continue from the first step of the new schedule at or below the recorded t.
    const int start = int(first_step_at_or_below(m_sampler->timesteps(), t));
    m_record.assign(size_t(start), at::Tensor());
    m_index = start;
    m_x = x.to(m_lab->device);
    m_gen.emplace(make_generator(settings.seed * 31 + quint64(index) + 1));
    return true;
}

bool ReverseChainJob::start() { return hasChain(); }

JobProgress ReverseChainJob::progress() const {
    return {m_index, m_sampler ? int(m_sampler->num_steps()) : 0};
}

void ReverseChainJob::finish(bool) {
    Q_EMIT m_worker->chainStopped(m_index, m_sampler ? int(m_sampler->num_steps()) : 0, m_requestId);
}

ChainFrame ReverseChainJob::frame(const StepOutput& out, int64_t t, double scale) const {
    const int total = int(m_sampler->num_steps());
    const ModelConfig& c = m_lab->config();
    ChainFrame f;
    f.index = m_index;
    f.total = total;
    f.t = int(t);
    f.guidance = scale;
    f.classifierScale = m_grad.defined() ? m_guidance->classifier_scale() : 0.0;
    if (!m_lab->isImage()) return f;
    Autoencoder ae = m_lab->model->autoencoder;
    // Latent models: the latents' channels as images, the predicted x0 decoded each step.
    auto pixels = [&](const at::Tensor& x) { return ae ? ae->decode(x.unsqueeze(0))[0] : x; };
    // The conditional and unconditional predictions of a guided step, split into x0 and eps.
    auto split = [&](const at::Tensor& out) {
        return m_lab->schedule.split_prediction(c.prediction, out.narrow(1, 0, m_x.size(1)), m_x, t);
    };
    if (ae) {
        f.latent = true;
        f.xt = latentImage(m_x[0]);
        f.x0Latent = latentImage(out.x0[0]);
        f.x0 = tensorToImage(pixels(out.x0[0]));
        f.eps = latentImage(out.eps[0]);
        f.next = m_index + 1 == total ? tensorToImage(pixels(out.x_prev[0])) : latentImage(out.x_prev[0]);
        if (m_outC.defined()) {
            const X0Eps cond = split(m_outC), uncond = split(m_outU);
            const double bound = ae->config().latent_clip;
            f.guided = true;
            f.x0Cond = tensorToImage(pixels(cond.x0[0].clamp(-bound, bound)));
            f.x0Uncond = tensorToImage(pixels(uncond.x0[0].clamp(-bound, bound)));
            f.guidanceMap = heatMap(cond.eps[0] - uncond.eps[0]);
        }
    } else {
        if (!m_tokenPositions.empty()) {
            // Cross-attention of the conditional pass (row 0 of the guided batch), each layer's
            // map brought to the image's size, averaged over layers; one map per word.
            const auto maps = m_lab->model->network->attention_maps();
            const int64_t S = m_x.size(2);
            at::Tensor acc;
            for (const auto& [side, w] : maps) {
                const at::Tensor m = w[0].transpose(0, 1).reshape({w.size(2), 1, side, side}).to(at::kCPU, at::kFloat);
                const at::Tensor up = at::upsample_bilinear2d(m, {S, S}, false);
                acc = acc.defined() ? acc + up : up;
            }
            if (acc.defined()) {
                acc = acc / double(maps.size());
                // One scale for all words (their largest weight): a word that draws little
                // attention stays dark. The caption gives its share of all attention.
                const at::Tensor pos = at::tensor(m_tokenPositions, at::kLong);
                const double top = std::max(1e-6, acc.index_select(0, pos).max().item<double>());
                for (size_t k = 0; k < m_tokenPositions.size(); ++k) {
                    const at::Tensor a = acc[m_tokenPositions[k]][0];
                    f.tokenMaps << tensorToImage(a.unsqueeze(0), 0.0, top);
                    f.tokens << QStringLiteral("“%1” %2%").arg(m_tokens[int(k)]).arg(100.0 * a.mean().item<double>(), 0, 'f', 0);
                }
            }
        }
        if (m_grad.defined()) f.classifierMap = heatMap(m_grad[0]);
        // x_t on the images' own scale (black -1, white +1, noise beyond it clipped), so that the
        // panel, the strip and an exported chain end on exactly the final image.
        f.xt = tensorToImage(m_x[0]);
        f.x0 = tensorToImage(out.x0[0]);
        f.eps = tensorToImage(out.eps[0], -3.0, 3.0);
        f.next = tensorToImage(out.x_prev[0]);
        if (m_outC.defined()) {
            const X0Eps cond = split(m_outC), uncond = split(m_outU);
            f.guided = true;
            f.x0Cond = tensorToImage(cond.x0[0].clamp(-1, 1));
            f.x0Uncond = tensorToImage(uncond.x0[0].clamp(-1, 1));
            f.guidanceMap = heatMap(cond.eps[0] - uncond.eps[0]);
        }
    }
    return f;
}

bool ReverseChainJob::step() {
    if (!m_sampler) return false;
    const int total = int(m_sampler->num_steps());
    if (m_index >= total || m_remaining == 0) return false;
    c10::NoGradGuard no_grad;
    try {
        m_outC = at::Tensor();
        m_outU = at::Tensor();
        m_grad = at::Tensor();
        const int64_t t = m_sampler->timesteps()[size_t(m_index)];
        const double scale = m_guidance->scale_at(t);
        const auto t0 = std::chrono::steady_clock::now();
        const StepOutput out = m_sampler->step(m_index, m_x, m_denoise, *m_gen);
        // A damaged or diverged model gives NaN or Inf: the chain stops and says so instead of
        // showing black panels.
        if (!at::isfinite(out.x_prev).all().item<bool>() || !at::isfinite(out.x0).all().item<bool>()) {
            Q_EMIT m_worker->failed(SamplingWorker::tr("The model produced non-finite values (NaN or Inf) at step %1 (t = %2): "
                                                       "its weights are damaged or it diverged in training; the chain is stopped")
                                        .arg(m_index + 1).arg(t));
            return false;
        }
        const auto t1 = std::chrono::steady_clock::now();  // the finiteness check above synchronised
        m_record.resize(size_t(m_index));
        m_record.push_back(m_x.to(at::kCPU));
        ChainFrame f = frame(out, t, scale);
        f.stepMs = std::chrono::duration<double, std::milli>(t1 - t0).count();
        f.frameMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
        m_x = out.x_prev;
        ++m_index;
        Q_EMIT m_worker->frameReady(f);
        if (m_remaining > 0) --m_remaining;
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Sampling failed: %1").arg(QString::fromStdString(error_message(e))));
        return false;
    }
    return m_index < total && m_remaining != 0;
}

}  // namespace dlab::ui
