#include "ui/jobs/sampling_worker.h"

#include "core/guidance/noisy_classifier.h"
#include "core/io/manifest.h"
#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"
#include "ui/jobs/batch_job.h"
#include "ui/jobs/vae_job.h"

namespace dlab::ui {

namespace {
bool loaded_is_text(const LabModel& lab) { return lab.model->config.network.context_dim > 0 && lab.model->text_encoder; }

// The first step's one-time costs (on CUDA the graph capture and cuDNN's choice of algorithms,
// about 0.6 s on an H200; on the 2-core CPU of the VM no measurable cost) paid while the model
// loads rather than after Play: one forward pass of the shape a guided image chain uses (the
// conditional and the null class in one batch). A failure is left to the chain's first step to report.
void warm_up(const LabModel& lab) {
    const NetworkConfig& n = lab.config().network;
    const int64_t C = n.num_classes, rows = C > 0 ? 2 : 1;
    try {
        at::NoGradGuard no_grad;
        const auto on = at::TensorOptions().device(lab.device);
        const at::Tensor x = at::zeros({rows, n.in_channels, n.image_size, n.image_size}, on.dtype(at::kFloat));
        const at::Tensor t = at::full({rows}, lab.schedule.timesteps() - 1, on.dtype(at::kLong));
        const at::Tensor y = C > 0 ? at::tensor({int64_t(0), C}, at::kLong).to(lab.device) : at::Tensor();
        (void)model_function(lab.model->network, lab.graphed)(x, t, y).to(at::kCPU);  // waits for the device
    } catch (const std::exception&) {
    }
}
}  // namespace

SamplingWorker::SamplingWorker() : m_guidance(std::make_shared<GuidanceControl>(3.0)), m_toy(std::make_shared<ToyChainJob>(this)) {
    qRegisterMetaType<dlab::ui::ChainSettings>();
    qRegisterMetaType<dlab::ui::BatchGridRequest>();
    qRegisterMetaType<dlab::ui::ChainFrame>();
    qRegisterMetaType<dlab::ui::ModelInfo>();
    qRegisterMetaType<dlab::ui::GenerativeRequest>();
    qRegisterMetaType<dlab::ui::LikelihoodRequest>();
    qRegisterMetaType<dlab::ui::LikelihoodCurve>();
    qRegisterMetaType<dlab::ui::SdsRequest>();
    qRegisterMetaType<dlab::ui::SdsFrame>();
    qRegisterMetaType<dlab::ui::VideoRequest>();
    qRegisterMetaType<dlab::ui::VideoStep>();
    qRegisterMetaType<dlab::ui::SweepRow>();
    qRegisterMetaType<QVector<double>>();
    qRegisterMetaType<dlab::ui::ForwardRequest>();
    qRegisterMetaType<dlab::ui::ForwardResult>();
    qRegisterMetaType<dlab::ui::ToyFrame>();
    qRegisterMetaType<dlab::ui::ToyChainRequest>();
}

SamplingWorker::~SamplingWorker() = default;

// ---- the scheduler ------------------------------------------------------------------------

void SamplingWorker::schedule(Lane lane, std::shared_ptr<LabJob> job, std::function<bool()> stale) {
    end(lane, false);
    job->resetCancel();
    if (!job->start()) {
        job->finish(false);
        return;
    }
    m_lanes[lane] = Slot{std::move(job), std::move(stale)};
    postPump();
}

void SamplingWorker::end(Lane lane, bool completed) {
    std::shared_ptr<LabJob> job = std::move(m_lanes[lane].job);
    m_lanes[lane] = Slot{};
    if (job) job->finish(completed);
}

void SamplingWorker::postPump() {
    if (m_pumpPosted) return;
    m_pumpPosted = true;
    QMetaObject::invokeMethod(this, [this] { pump(); }, Qt::QueuedConnection);
}

void SamplingWorker::pump() {
    m_pumpPosted = false;
    serveForward();
    // Stops and newer requests are honoured before every step.
    for (int lane = 0; lane < kLanes; ++lane) {
        const Slot& slot = m_lanes[lane];
        if (slot.job && (slot.job->isCancelled() || (slot.stale && slot.stale()))) end(Lane(lane), false);
    }
    // One step of the next job in turn.
    for (int k = 0; k < kLanes; ++k) {
        const int lane = (m_turn + k) % kLanes;
        const std::shared_ptr<LabJob> job = m_lanes[lane].job;
        if (!job) continue;
        m_turn = (lane + 1) % kLanes;
        const bool more = job->step();
        if (!more && m_lanes[lane].job == job) end(Lane(lane), true);
        break;
    }
    for (const Slot& slot : m_lanes)
        if (slot.job) postPump();
}

std::function<bool()> SamplingWorker::imageStale(int requestId) {
    return [this, requestId] { return m_stop.load() || requestId != m_latest.load(); };
}

// ---- the loaded model ---------------------------------------------------------------------

void SamplingWorker::loadModel(const QString& path, const QString& device) {
    end(ImageLane, false);
    try {
        auto dev = select_device(device.toStdString());
        if (!dev) {
            Q_EMIT failed(QString::fromStdString(dev.error()));
            return;
        }
        auto loaded = load_model(path.toStdString(), dev.value());
        if (!loaded) {
            Q_EMIT failed(QString::fromStdString(loaded.error()));
            return;
        }
        auto schedule = NoiseSchedule::create(loaded->config.schedule);
        if (!schedule) {
            Q_EMIT failed(path + QStringLiteral(": ") + QString::fromStdString(schedule.error()));
            return;
        }
        auto lab = std::make_shared<LabModel>(LabModel{std::make_shared<LoadedModel>(std::move(loaded.value())),
                                                        schedule.value(), dev.value(), {}, nullptr});
        // A text model reads its prompt table in the forward pass: no CUDA graph replays it.
        if (loaded_is_text(*lab)) lab->graphed = nullptr;
        else lab->graphed = std::make_shared<GraphedModel>(lab->model->network);
        if (lab->isImage() && !loaded_is_text(*lab)) warm_up(*lab);
        ModelInfo info;
        info.path = path;
        const ModelConfig& c = lab->config();
        info.image = lab->isImage();
        info.timesteps = int(lab->schedule.timesteps());
        info.description = QStringLiteral("%1 · %2 · %3 schedule · %4 prediction · %5 parameters · %6")
                               .arg(QString::fromStdString(to_string(c.network.kind)),
                                    QString::fromStdString(c.dataset),
                                    QString::fromStdString(to_string(c.schedule.kind)),
                                    QString::fromStdString(to_string(c.prediction)))
                               .arg(lab->model->network->parameter_count())
                               .arg(QString::fromStdString(dev->str()));
        // The bundled tiers say which one this is (the GUI opens the quality tier on a GPU).
        if (auto manifest = read_manifest(path.toStdString())) {
            if (!manifest->tier.empty()) {
                info.description += manifest->tier == "quality" ? QStringLiteral(" · quality tier (the GPU model)")
                                    : manifest->tier == "cpu"   ? QStringLiteral(" · CPU tier (small, animates live on a CPU)")
                                                                : QStringLiteral(" · %1 tier").arg(QString::fromStdString(manifest->tier));
                if (!manifest->sampling.empty()) info.description += QStringLiteral(" · ") + QString::fromStdString(manifest->sampling);
            }
            if (const auto& r = manifest->recommended) {
                info.recommendedSampler = QString::fromStdString(r->sampler);
                info.recommendedSteps = int(r->steps);
                info.recommendedGuidance = r->guidance;
                info.recommendedSpacing = QString::fromStdString(r->spacing);
            }
        }
        for (const auto& n : c.class_names) info.classNames << QString::fromStdString(n);
        // Classifier guidance: the bundled noise-aware classifier, when its images match.
        if (info.image && c.network.num_classes > 0) {
            if (auto cp = resolve_model("fashion-mnist-noisy-classifier")) {
                if (auto clf = load_noisy_classifier(cp.value(), dev.value())) {
                    const auto& cc = clf.value()->config();
                    if (cc.in_channels == c.network.in_channels && cc.image_size == c.network.image_size &&
                        cc.num_classes == c.network.num_classes)
                        lab->classifierGrad = classifier_gradient(clf.value(), lab->schedule);
                }
            }
        }
        info.classifierGuidance = bool(lab->classifierGrad);
        info.latent = bool(lab->model->autoencoder);
        if (info.latent)
            info.description += QStringLiteral(" · latent %1x%2x%2, decoded by %3")
                                    .arg(c.network.in_channels).arg(c.network.image_size)
                                    .arg(QString::fromStdString(c.autoencoder));
        if (loaded_is_text(*lab)) {
            info.text = true;
            const Clip& clip = *lab->model->text_encoder;
            for (size_t w = 4; w < clip.tokenizer.words().size(); ++w)
                info.vocabulary << QString::fromStdString(clip.tokenizer.words()[w]);
            info.promptWords = int(clip.tokenizer.context() - 2);
            info.description += QStringLiteral(" · text-to-image: prompts read by %1").arg(QString::fromStdString(c.text_encoder));
        }
        m_lab = lab;
        m_chain = std::make_shared<ReverseChainJob>(m_lab, m_guidance, this);
        Q_EMIT modelLoaded(info);
    } catch (const std::exception& e) {
        Q_EMIT failed(path + QStringLiteral(": ") + QString::fromStdString(error_message(e)));
    }
}

ModelImageShape SamplingWorker::modelImageShape() const {
    ModelImageShape shape;
    if (!m_lab) return shape;
    if (const Autoencoder& ae = m_lab->model->autoencoder) {
        shape.channels = int(ae->config().in_channels);
        shape.size = int(ae->config().image_size);
    } else if (m_lab->isImage()) {
        shape.channels = int(m_lab->config().network.in_channels);
        shape.size = int(m_lab->config().network.image_size);
    }
    return shape;
}

// ---- the image lane -----------------------------------------------------------------------

void SamplingWorker::startChain(const ChainSettings& settings, int runSteps, int requestId) {
    if (requestId != m_latest.load()) return;  // a newer request is queued: skip this one
    end(ImageLane, false);
    if (!m_lab) {
        Q_EMIT failed(tr("No model is loaded"));
        return;
    }
    try {
        m_chain->begin(settings);
    } catch (const std::exception& e) {
        Q_EMIT failed(QString::fromStdString(error_message(e)));
        return;
    }
    runChain(runSteps, requestId);
}

void SamplingWorker::runSteps(int n, int requestId) {
    if (requestId != m_latest.load()) return;
    end(ImageLane, false);
    if (!m_chain || !m_chain->hasChain()) {
        Q_EMIT failed(tr("No chain to continue: press Play to start one"));
        return;
    }
    runChain(n, requestId);
}

void SamplingWorker::runChain(int n, int requestId) {
    m_stop = false;
    m_chain->setRun(n, requestId);
    schedule(ImageLane, m_chain, imageStale(requestId));
}

void SamplingWorker::forkFrom(int index, const ChainSettings& settings, int runSteps, int requestId) {
    if (requestId != m_latest.load()) return;
    end(ImageLane, false);
    try {
        if (!m_chain || !m_chain->fork(index, settings)) {
            Q_EMIT failed(tr("Cannot fork: step %1 has not been recorded").arg(index + 1));
            return;
        }
    } catch (const std::exception& e) {
        Q_EMIT failed(QString::fromStdString(error_message(e)));
        return;
    }
    runChain(runSteps, requestId);
}

void SamplingWorker::generateGrid(const BatchGridRequest& request, int requestId) {
    if (requestId != m_latest.load()) return;
    m_stop = false;
    schedule(ImageLane, std::make_shared<BatchGridJob>(m_lab, request, this), imageStale(requestId));
}

void SamplingWorker::runSweep(int kind, const QVector<double>& scales, int count, int steps, quint64 seed,
                              double dynamicThreshold, int sampler, int spacing, int requestId) {
    if (requestId != m_latest.load()) return;
    m_stop = false;
    const SweepRequest request{kind, scales, count, steps, seed, dynamicThreshold, SamplerKind(sampler), TimestepSpacing(spacing)};
    schedule(ImageLane, std::make_shared<SweepJob>(m_lab, request, this), imageStale(requestId));
}

void SamplingWorker::generateVaeGrid(int count, quint64 seed, int requestId) {
    if (requestId != m_latest.load()) return;
    m_stop = false;  // a stop asked of an earlier job (a model switch asks one) is not this job's
    schedule(ImageLane, std::make_shared<VaeGridJob>(m_lab, count, seed, this), imageStale(requestId));
}

void SamplingWorker::generateModels(const GenerativeRequest& request, int requestId) {
    if (requestId != m_latest.load()) return;
    m_stop = false;
    schedule(ImageLane, std::make_shared<GenerativeJob>(m_lab, request, requestId, this), imageStale(requestId));
}

void SamplingWorker::computeLikelihood(const LikelihoodRequest& request, int requestId) {
    if (requestId != m_latest.load()) return;
    m_stop = false;
    schedule(ImageLane, std::make_shared<LikelihoodJob>(m_lab, request, requestId, this), imageStale(requestId));
}

void SamplingWorker::startSds(const SdsRequest& request, int requestId) {
    if (requestId != m_latest.load()) return;
    m_stop = false;
    m_sds = std::make_shared<SdsJob>(request, requestId, this);
    schedule(ImageLane, m_sds, imageStale(requestId));
}

void SamplingWorker::continueSds(int steps, int requestId) {
    if (requestId != m_latest.load()) return;
    if (!m_sds) {
        Q_EMIT failed(tr("Score distillation: there is no run to continue; start one"));
        return;
    }
    m_stop = false;
    end(ImageLane, false);
    m_sds->resetCancel();
    m_sds->extend(steps, requestId);
    schedule(ImageLane, m_sds, imageStale(requestId));
}

void SamplingWorker::startVideo(const VideoRequest& request, int requestId) {
    if (requestId != m_latest.load()) return;
    m_stop = false;
    schedule(ImageLane, std::make_shared<VideoJob>(request, requestId, this), imageStale(requestId));
}

// ---- the 2-D lane -------------------------------------------------------------------------

void SamplingWorker::startToyChain(const ToyChainRequest& request, int requestId) {
    if (requestId != m_latestToy.load()) return;  // a newer toy request is queued
    end(ToyLane, false);
    m_toy->setRequest(request, requestId);
    schedule(ToyLane, m_toy, [this, requestId] { return requestId != m_latestToy.load(); });
}

// ---- the forward preview mailbox ----------------------------------------------------------

void SamplingWorker::requestForward(const ForwardRequest& request) {
    std::lock_guard<std::mutex> lock(m_forwardMutex);
    m_forwardPending = request;
    if (m_forwardPosted) return;  // a serve event is queued and will take this one
    m_forwardPosted = true;
    QMetaObject::invokeMethod(this, [this] { serveForward(); }, Qt::QueuedConnection);
}

void SamplingWorker::serveForward() {
    std::optional<ForwardRequest> request;
    {
        std::lock_guard<std::mutex> lock(m_forwardMutex);
        request.swap(m_forwardPending);
        m_forwardPosted = false;
    }
    if (!request) return;
    ForwardResult result = m_forward.compute(*request, modelImageShape());
    ++m_forwardServed;
    Q_EMIT forwardReady(result);
}

}  // namespace dlab::ui
