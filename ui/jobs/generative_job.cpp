#include "ui/jobs/generative_job.h"

#include <cmath>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/gan/gan.h"
#include "core/io/model_catalog.h"
#include "core/latent/autoencoder.h"
#include "core/runtime/runtime.h"
#include "core/sampling/sampler.h"
#include "imaging/image_io.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

namespace {

// The bundled GAN and autoencoder, read once per worker thread (a slider move asks again at once).
Result<GanModel> cachedGan(c10::Device device) {
    thread_local std::optional<std::pair<c10::Device, GanModel>> cache;
    if (cache && cache->first == device) return cache->second;
    auto path = resolve_model("fashion-mnist-gan");
    if (!path) return Error{path.error()};
    auto gan = load_gan(path.value(), device);
    if (gan) cache.emplace(device, gan.value());
    return gan;
}

Result<Autoencoder> cachedAutoencoder(c10::Device device) {
    thread_local std::optional<std::pair<c10::Device, Autoencoder>> cache;
    if (cache && cache->first == device) return cache->second;
    auto path = resolve_model("fashion-mnist-autoencoder");
    if (!path) return Error{path.error()};
    auto ae = load_autoencoder(path.value(), device);
    if (ae) cache.emplace(device, ae.value());
    return ae;
}

// A grid image of images in [-1, 1]: `cols` columns.
QImage gridImage(const at::Tensor& x, int64_t cols) {
    return tensorToImage(imaging::make_grid((x.clamp(-1, 1) + 1) / 2, cols, 2, 1.0), 0.0, 1.0);
}

}  // namespace

GenerativeJob::GenerativeJob(std::shared_ptr<const LabModel> lab, const GenerativeRequest& request, int requestId,
                             SamplingWorker* worker)
    : m_lab(std::move(lab)), m_request(request), m_requestId(requestId), m_worker(worker) {}

bool GenerativeJob::start() {
    if (!m_lab || !m_lab->isImage() || m_lab->config().network.num_classes <= 0 || !m_lab->config().autoencoder.empty()) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Generative models: load a class-conditional pixel model (e.g. fashion-mnist-cosine) in the Reverse chain tab"));
        return false;
    }
    const int C = int(m_lab->config().network.num_classes);
    if (m_request.count < 2 || m_request.count > 256 || m_request.diffusionSteps < 1 || m_request.diffusionSteps > 1000 ||
        m_request.classIndex < 0 || m_request.classIndex >= C) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Generative models: count 2-256, steps 1-1000 and a class of the model"));
        return false;
    }
    m_labels = at::full({m_request.count}, int64_t(m_request.classIndex), at::kLong);
    return true;
}

JobProgress GenerativeJob::progress() const {
    const int total = 2 + (m_run ? int(m_run->total_steps()) : m_request.diffusionSteps);
    const int done = m_phase >= 3 ? total : m_phase < 2 ? m_phase : 2 + (m_run ? int(m_run->steps_done()) : 0);
    return {done, total};
}

bool GenerativeJob::step() {
    c10::NoGradGuard ng;
    const int n = m_request.count;
    const int64_t cols = m_request.interpolate ? n : int64_t(std::ceil(std::sqrt(double(n))));
    try {
        if (m_phase == 0) {
            m_phase = 1;
            auto gan = cachedGan(m_lab->device);
            if (!gan) {
                Q_EMIT m_worker->generativePanel(0, QImage(), SamplingWorker::tr("GAN: %1").arg(QString::fromStdString(gan.error())), m_requestId);
                return true;
            }
            at::Tensor x;
            if (m_request.interpolate) {
                const at::Tensor za = gan_latent(gan->config, m_request.seed, m_lab->device);
                const at::Tensor zb = gan_latent(gan->config, m_request.seedB, m_lab->device);
                std::vector<at::Tensor> zs;
                for (int i = 0; i < n; ++i) zs.push_back(at::lerp(za, zb, double(i) / (n - 1)));
                x = gan->generator->forward(at::cat(zs, 0), m_labels.to(m_lab->device)).cpu();
            } else {
                x = gan_generate(*gan->generator, n, m_labels, m_request.seed, n);
            }
            Q_EMIT m_worker->generativePanel(0, gridImage(x, cols),
                                             m_request.interpolate ? SamplingWorker::tr("GAN: z linear from seed A to seed B (one step each)")
                                                                   : SamplingWorker::tr("GAN: one step"), m_requestId);
            return true;
        }
        if (m_phase == 1) {
            m_phase = 2;
            if (!m_request.interpolate) {
                auto ae = cachedAutoencoder(m_lab->device);
                if (!ae) {
                    Q_EMIT m_worker->generativePanel(1, QImage(), SamplingWorker::tr("VAE: %1").arg(QString::fromStdString(ae.error())), m_requestId);
                } else {
                    const auto& ac = ae.value()->config();
                    const at::Tensor z = at::randn({n, ac.latent_channels, ac.latent_size(), ac.latent_size()},
                                                   make_generator(m_request.seed), at::TensorOptions().dtype(at::kFloat));
                    const at::Tensor x = decode_all(ae.value(), ae.value()->scale_latents(z), m_lab->device);
                    Q_EMIT m_worker->generativePanel(1, gridImage(x, cols), SamplingWorker::tr("VAE prior: one step (unconditional)"), m_requestId);
                }
            }
            GenerateRequest req;
            req.sampler.kind = SamplerKind::Ddim;
            req.sampler.steps = m_request.interpolate ? 50 : m_request.diffusionSteps;
            req.labels = m_labels;
            req.count = n;
            req.guidance = 1.0;
            req.seed = m_request.seed;
            req.batch = n;
            if (m_request.interpolate) {
                // Spherical interpolation of the starting noise: every frame stays a plausible x_T.
                const auto& nc = m_lab->config().network;
                const at::Tensor a = at::randn({1, nc.in_channels, nc.image_size, nc.image_size}, make_generator(m_request.seed));
                const at::Tensor b = at::randn({1, nc.in_channels, nc.image_size, nc.image_size}, make_generator(m_request.seedB));
                std::vector<at::Tensor> frames;
                for (int i = 0; i < n; ++i) frames.push_back(slerp(a, b, double(i) / (n - 1)));
                req.noise = at::cat(frames, 0);
            }
            auto run = GenerateRun::create(*m_lab->model, req);
            if (!run) {
                Q_EMIT m_worker->failed(QString::fromStdString(run.error()));
                m_phase = 3;
                return false;
            }
            m_run = std::move(run.value());
            return true;
        }
        if (m_phase == 2) {
            m_run->step();
            Q_EMIT m_worker->batchProgress(progress().done, progress().total);
            if (!m_run->done()) return true;
            m_phase = 3;
            const QString caption = m_request.interpolate
                                        ? SamplingWorker::tr("Diffusion: x_T spherical from seed A to seed B, DDIM 50 steps")
                                        : SamplingWorker::tr("Diffusion: DDIM %1 step%2").arg(m_request.diffusionSteps).arg(m_request.diffusionSteps == 1 ? "" : "s");
            Q_EMIT m_worker->generativePanel(2, gridImage(m_run->result(), cols), caption, m_requestId);
            return false;
        }
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("Generative models: %1").arg(QString::fromStdString(error_message(e))));
        m_phase = 3;
    }
    return false;
}

}  // namespace dlab::ui
