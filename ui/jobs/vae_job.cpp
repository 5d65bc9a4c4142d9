#include "ui/jobs/vae_job.h"

#include <cmath>

#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/io/manifest.h"
#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"
#include "imaging/image_io.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

namespace {

// A figure from a bundled model's manifest (name.json beside name.safetensors), or NaN.
double manifestFigure(const std::string& modelPath, const std::vector<std::string>& keys) {
    const auto manifest = read_manifest(modelPath);
    const auto figure = manifest ? manifest_figure(manifest.value(), keys) : std::nullopt;
    return figure ? *figure : std::nan("");
}

}  // namespace

VaeGridJob::VaeGridJob(std::shared_ptr<const LabModel> lab, int count, quint64 seed, SamplingWorker* worker)
    : m_lab(std::move(lab)), m_count(count), m_seed(seed), m_worker(worker) {}

bool VaeGridJob::start() {
    if (!m_lab || !m_lab->model->autoencoder) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("VAE samples need a latent model (e.g. latent-fashion-mnist)"));
        return false;
    }
    if (m_count < 1) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("VAE samples: the count must be positive"));
        return false;
    }
    return true;
}

bool VaeGridJob::step() {
    m_done = true;
    try {
        c10::NoGradGuard ng;
        Autoencoder ae = m_lab->model->autoencoder;
        const auto& ac = ae->config();
        const at::Tensor z = at::randn({m_count, ac.latent_channels, ac.latent_size(), ac.latent_size()},
                                       make_generator(m_seed), at::TensorOptions().dtype(at::kFloat));
        // The VAE's own prior: N(0, I) for the unscaled latent (what its KL term pulls towards).
        const at::Tensor x = decode_all(ae, ae->scale_latents(z), m_lab->device);
        const int64_t cols = int64_t(std::ceil(std::sqrt(double(m_count))));
        const at::Tensor grid = imaging::make_grid((x + 1) / 2, cols, 2, 1.0);
        QString title = SamplingWorker::tr("VAE: the decoder on latents drawn from N(0, I), one step, no diffusion");
        auto aePath = resolve_model(m_lab->config().autoencoder);
        const double vaeFid = aePath ? manifestFigure(aePath.value(), {"vae_prior_samples_n10000", "fid"}) : std::nan("");
        const double ldmFid = manifestFigure(m_lab->model->path, {"latent", "s=1", "fid"});
        if (std::isfinite(vaeFid) && std::isfinite(ldmFid))
            title += SamplingWorker::tr(" · FID %1 against %2 for latent diffusion at s = 1 (N = 10,000, manifests)").arg(vaeFid, 0, 'f', 0).arg(ldmFid, 0, 'f', 1);
        Q_EMIT m_worker->gridReady(tensorToImage(grid, 0.0, 1.0), title);
    } catch (const std::exception& e) {
        Q_EMIT m_worker->failed(SamplingWorker::tr("VAE samples failed: %1").arg(QString::fromStdString(error_message(e))));
    }
    return false;
}

}  // namespace dlab::ui
