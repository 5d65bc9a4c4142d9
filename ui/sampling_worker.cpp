#include "ui/sampling_worker.h"

#include <cmath>

#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <QElapsedTimer>

#include "core/classifier.h"
#include "core/datasets.h"
#include "core/feature_net.h"
#include "core/generate.h"
#include "core/metrics.h"
#include "core/model_catalog.h"
#include "core/noisy_classifier.h"
#include "core/runtime.h"
#include "imaging/image_io.h"
#include "ui/tensor_image.h"

namespace dlab::ui {

SamplingWorker::SamplingWorker() : m_guidance(std::make_shared<GuidanceControl>(3.0)) {
    qRegisterMetaType<dlab::ui::ChainSettings>();
    qRegisterMetaType<dlab::ui::ChainFrame>();
    qRegisterMetaType<dlab::ui::ModelInfo>();
    qRegisterMetaType<dlab::ui::SweepRow>();
    qRegisterMetaType<QVector<double>>();
    qRegisterMetaType<dlab::ui::ForwardRequest>();
    qRegisterMetaType<dlab::ui::ForwardResult>();
    qRegisterMetaType<dlab::ui::ToyFrame>();
    qRegisterMetaType<dlab::ui::ToyChainRequest>();
}

SamplingWorker::~SamplingWorker() = default;

void SamplingWorker::loadModel(const QString& path, const QString& device) {
    endChain();
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
        m_model = std::make_unique<LoadedModel>(std::move(loaded.value()));
        m_schedule = std::make_unique<NoiseSchedule>(schedule.value());
        m_sampler.reset();
        m_record.clear();
        m_index = 0;
        ModelInfo info;
        info.path = path;
        const ModelConfig& c = m_model->config;
        info.image = c.network.kind == NetworkKind::UNet;
        info.description = QStringLiteral("%1 · %2 · %3 schedule · %4 prediction · %5 parameters · %6")
                               .arg(QString::fromStdString(to_string(c.network.kind)),
                                    QString::fromStdString(c.dataset),
                                    QString::fromStdString(to_string(c.schedule.kind)),
                                    QString::fromStdString(to_string(c.prediction)))
                               .arg(m_model->network->parameter_count())
                               .arg(QString::fromStdString(dev->str()));
        for (const auto& n : c.class_names) info.classNames << QString::fromStdString(n);
        // Classifier guidance: the bundled noise-aware classifier, when its images match.
        m_classifierGrad = nullptr;
        if (info.image && c.network.num_classes > 0) {
            if (auto cp = resolve_model("fashion-mnist-noisy-classifier")) {
                if (auto clf = load_noisy_classifier(cp.value(), dev.value())) {
                    const auto& cc = clf.value()->config();
                    if (cc.in_channels == c.network.in_channels && cc.image_size == c.network.image_size &&
                        cc.num_classes == c.network.num_classes)
                        m_classifierGrad = classifier_gradient(clf.value(), *m_schedule);
                }
            }
        }
        info.classifierGuidance = bool(m_classifierGrad);
        info.latent = bool(m_model->autoencoder);
        if (info.latent)
            info.description += QStringLiteral(" · latent %1x%2x%2, decoded by %3")
                                    .arg(c.network.in_channels).arg(c.network.image_size)
                                    .arg(QString::fromStdString(c.autoencoder));
        Q_EMIT modelLoaded(info);
    } catch (const std::exception& e) {
        Q_EMIT failed(path + QStringLiteral(": ") + QString::fromUtf8(e.what()));
    }
}

void SamplingWorker::prepare(const ChainSettings& s) {
    const ModelConfig& c = m_model->config;
    SamplerConfig sc;
    sc.kind = s.sampler;
    sc.steps = s.steps;
    sc.eta = s.sampler == SamplerKind::Ddpm ? 1.0 : s.eta;
    sc.clip_x0 = c.network.kind == NetworkKind::UNet;
    if (m_model->autoencoder) sc.clip_value = m_model->autoencoder->config().latent_clip;  // unit-variance latents
    auto sampler = make_sampler(*m_schedule, sc);
    if (!sampler) throw std::runtime_error(sampler.error());
    m_sampler = std::move(sampler.value());
    m_settings = s;
    m_guidance->set_scale(s.guidance);
    const c10::Device dev = m_model->network->parameters().front().device();
    const int64_t C = c.network.num_classes;
    at::Tensor y;
    if (C > 0) y = at::full({1}, s.classIndex < 0 ? C : std::min<int64_t>(s.classIndex, C - 1), at::kLong).to(dev);
    Network net = m_model->network;
    ModelFn fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& l) { return net->forward(x, t, l); };
    RawDenoiser raw;
    if (C > 0 && s.classIndex >= 0) {
        raw = classifier_free_guidance(fn, y, C, m_guidance,
                                       [this](int64_t, double, const at::Tensor& oc, const at::Tensor& ou) {
                                           m_outC = oc;
                                           m_outU = ou;
                                       });
    } else {
        raw = plain_denoiser(fn, y);
    }
    m_denoise = make_denoiser(raw, *m_schedule, c.prediction);
    m_guidance->set_classifier_scale(s.classifierScale);
    if (m_classifierGrad && C > 0 && s.classIndex >= 0) {
        m_denoise = add_classifier_guidance(m_denoise, m_classifierGrad, y, m_guidance,
                                            [this](int64_t, double, const at::Tensor& g) { m_grad = g; });
    }
}

void SamplingWorker::startChain(const ChainSettings& settings, int runSteps, int requestId) {
    if (requestId != m_latest.load()) return;  // a newer request is queued: skip this one
    endChain();
    if (!m_model) {
        Q_EMIT failed(tr("No model is loaded"));
        return;
    }
    try {
        prepare(settings);
        m_gen = std::make_unique<at::Generator>(make_generator(settings.seed));
        const NetworkConfig& n = m_model->config.network;
        std::vector<int64_t> shape = n.kind == NetworkKind::UNet
                                         ? std::vector<int64_t>{1, n.in_channels, n.image_size, n.image_size}
                                         : std::vector<int64_t>{1, n.in_channels};
        const c10::Device dev = m_model->network->parameters().front().device();
        m_x = at::randn(shape, *m_gen, at::TensorOptions().dtype(at::kFloat)).to(dev);
        m_record.clear();
        m_index = 0;
    } catch (const std::exception& e) {
        Q_EMIT failed(QString::fromUtf8(e.what()));
        return;
    }
    loop(runSteps, requestId);
}

void SamplingWorker::runSteps(int n, int requestId) {
    if (requestId != m_latest.load()) return;
    endChain();
    if (!m_sampler) {
        Q_EMIT failed(tr("No chain to continue: press Play to start one"));
        return;
    }
    loop(n, requestId);
}

void SamplingWorker::forkFrom(int index, const ChainSettings& settings, int runSteps, int requestId) {
    if (requestId != m_latest.load()) return;
    endChain();
    if (!m_model || index < 0 || index >= int(m_record.size())) {
        Q_EMIT failed(tr("Cannot fork: step %1 has not been recorded").arg(index + 1));
        return;
    }
    try {
        const int64_t t = m_sampler->timesteps()[size_t(index)];
        const at::Tensor x = m_record[size_t(index)];
        prepare(settings);
        // Continue from the first step of the new schedule at or below the recorded t.
        const auto& ts = m_sampler->timesteps();
        int start = 0;
        while (start < int(ts.size()) && ts[size_t(start)] > t) ++start;
        if (start >= int(ts.size())) start = int(ts.size()) - 1;
        m_record.assign(size_t(start), at::Tensor());
        m_index = start;
        const c10::Device dev = m_model->network->parameters().front().device();
        m_x = x.to(dev);
        m_gen = std::make_unique<at::Generator>(make_generator(settings.seed * 31 + quint64(index) + 1));
    } catch (const std::exception& e) {
        Q_EMIT failed(QString::fromUtf8(e.what()));
        return;
    }
    loop(runSteps, requestId);
}

namespace {

// A figure from a bundled model's manifest (name.json beside name.safetensors), or NaN.
double manifestFigure(const std::string& modelPath, const QStringList& keys) {
    QString path = QString::fromStdString(modelPath);
    path.replace(QRegularExpression(QStringLiteral("\\.safetensors$")), QStringLiteral(".json"));
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return std::nan("");
    QJsonValue v = QJsonDocument::fromJson(f.readAll()).object();
    for (const QString& k : keys) v = v.toObject().value(k);
    return v.isDouble() ? v.toDouble() : std::nan("");
}

}  // namespace

void SamplingWorker::generateVaeGrid(int count, quint64 seed, int requestId) {
    if (requestId != m_latest.load()) return;
    if (!m_model || !m_model->autoencoder) {
        Q_EMIT failed(tr("VAE samples need a latent model (e.g. latent-fashion-mnist)"));
        return;
    }
    endChain();
    try {
        c10::NoGradGuard ng;
        Autoencoder ae = m_model->autoencoder;
        const auto& ac = ae->config();
        const c10::Device dev = m_model->network->parameters().front().device();
        const at::Tensor z = at::randn({count, ac.latent_channels, ac.latent_size(), ac.latent_size()},
                                       make_generator(seed), at::TensorOptions().dtype(at::kFloat));
        // The VAE's own prior: N(0, I) for the unscaled latent (what its KL term pulls towards).
        const at::Tensor x = decode_all(ae, z * ac.scale_factor, dev);
        const int64_t cols = int64_t(std::ceil(std::sqrt(double(count))));
        const at::Tensor grid = imaging::make_grid((x + 1) / 2, cols, 2, 1.0);
        QString title = tr("VAE: the decoder on latents drawn from N(0, I), one step, no diffusion");
        auto aePath = resolve_model(m_model->config.autoencoder);
        const double vaeFid = aePath ? manifestFigure(aePath.value(), {QStringLiteral("figures"), QStringLiteral("vae_prior_samples_n10000"), QStringLiteral("fid")}) : std::nan("");
        const double ldmFid = manifestFigure(m_model->path, {QStringLiteral("figures"), QStringLiteral("latent"), QStringLiteral("s=1"), QStringLiteral("fid")});
        if (std::isfinite(vaeFid) && std::isfinite(ldmFid))
            title += tr(" · FID %1 against %2 for latent diffusion at s = 1 (N = 10,000, manifests)").arg(vaeFid, 0, 'f', 0).arg(ldmFid, 0, 'f', 1);
        Q_EMIT gridReady(tensorToImage(grid, 0.0, 1.0), title);
    } catch (const std::exception& e) {
        Q_EMIT failed(tr("VAE samples failed: %1").arg(QString::fromUtf8(e.what())));
    }
}

void SamplingWorker::generateGrid(int classIndex, const QVector<double>& scales, int perScale, int steps,
                                  quint64 seed, int requestId) {
    if (requestId != m_latest.load()) return;
    if (!m_model) {
        Q_EMIT failed(tr("No model is loaded"));
        return;
    }
    if (m_model->config.network.kind != NetworkKind::UNet) {
        Q_EMIT failed(tr("Batch grids need an image model"));
        return;
    }
    endChain();
    m_stop = false;
    // Stop when asked or when a newer request arrives.
    std::atomic<bool> cancel{false};
    try {
        const int64_t C = m_model->config.network.num_classes;
        std::vector<at::Tensor> rows;
        int done = 0;
        const int total = int(scales.size()) * steps;
        for (double s : scales) {
            GenerateRequest req;
            req.sampler.kind = SamplerKind::Ddim;
            req.sampler.steps = steps;
            req.count = perScale;
            if (C > 0) req.labels = at::full({perScale}, classIndex < 0 ? C : classIndex, at::kLong);
            req.guidance = s;
            req.seed = seed;  // the same starting noise for every scale
            req.batch = perScale;
            req.cancel = &cancel;
            auto x = generate(*m_model, req, [&](int64_t, int64_t, const StepInfo&) {
                if (m_stop.load() || requestId != m_latest.load()) cancel = true;
                Q_EMIT batchProgress(++done, total);
                serveForward();
            });
            if (!x) {
                if (x.error() != "cancelled") Q_EMIT failed(QString::fromStdString(x.error()));
                return;
            }
            rows.push_back((x.value().clamp(-1, 1) + 1) / 2);
        }
        const at::Tensor all = at::cat(rows, 0);
        const int64_t cols = scales.size() > 1 ? perScale : int64_t(std::ceil(std::sqrt(double(perScale))));
        const at::Tensor grid = imaging::make_grid(all, cols, 2, 1.0);
        QString title;
        if (scales.size() > 1) {
            QStringList sc;
            for (double s : scales) sc << QString::number(s);
            title = tr("rows: guidance s = %1 (same seeds in every row)").arg(sc.join(QStringLiteral(", ")));
        } else {
            title = tr("%1 samples, guidance s = %2").arg(perScale).arg(scales.front());
        }
        Q_EMIT gridReady(tensorToImage(grid, 0.0, 1.0), title);
    } catch (const std::exception& e) {
        Q_EMIT failed(tr("Batch failed: %1").arg(QString::fromUtf8(e.what())));
    }
}

void SamplingWorker::runSweep(int kind, const QVector<double>& scales, int count, int steps, quint64 seed,
                              int requestId) {
    if (requestId != m_latest.load()) return;
    if (!m_model || m_model->config.network.kind != NetworkKind::UNet || m_model->config.network.num_classes == 0) {
        Q_EMIT failed(tr("The guidance explorer needs a class-conditional image model"));
        Q_EMIT sweepFinished(false, QString());
        return;
    }
    if (kind == 1 && !m_classifierGrad) {
        Q_EMIT failed(tr("Classifier guidance needs a noise-aware classifier for this model's images"));
        Q_EMIT sweepFinished(false, QString());
        return;
    }
    endChain();
    m_stop = false;
    std::atomic<bool> cancel{false};
    try {
        const c10::Device dev = m_model->network->parameters().front().device();
        auto cpath = resolve_model("fashion-mnist-classifier");
        if (!cpath) throw std::runtime_error(cpath.error());
        auto clf = load_classifier(cpath.value(), dev);
        if (!clf) throw std::runtime_error(clf.error());
        auto fnet = classifier_feature_net(clf.value(), dev, "Fashion-MNIST classifier");
        auto test = load_fashion_mnist(fashion_mnist_dir(), false);
        if (!test) throw std::runtime_error(test.error());
        auto train = load_fashion_mnist(fashion_mnist_dir(), true);
        if (!train) throw std::runtime_error(train.error());
        const int64_t N = count;
        const Features real = fnet->extract(test->x.narrow(0, 0, std::min<int64_t>(N, test->x.size(0))));
        const FeatureStats realStats = feature_stats(real.pooled);
        const double floorFid = frechet_distance(
            feature_stats(fnet->extract(train->x.narrow(0, 0, std::min<int64_t>(N, train->x.size(0)))).pooled), realStats);
        const int64_t C = m_model->config.network.num_classes;
        const at::Tensor target = at::arange(N, at::kLong).remainder(C);
        int done = 0;
        const int total = int(scales.size()) * steps;
        for (double s : scales) {
            GenerateRequest req;
            req.sampler.kind = SamplerKind::Ddim;
            req.sampler.steps = steps;
            req.labels = target;
            req.count = N;
            req.seed = seed;  // the same starting noise at every scale
            req.batch = 250;
            req.cancel = &cancel;
            req.guidance = kind == 0 ? s : 0.0;
            if (kind == 1) {
                req.classifier_grad = m_classifierGrad;
                req.classifier_scale = s;
                req.classifier_labels = target;
            }
            QElapsedTimer clock;
            clock.start();
            auto x = generate(*m_model, req, [&](int64_t, int64_t, const StepInfo& st) {
                if (m_stop.load() || requestId != m_latest.load()) cancel = true;
                if (st.index + 1 == st.total || st.index % 5 == 0) Q_EMIT batchProgress(done + int(st.index) + 1, total);
                serveForward();
            });
            if (!x) {
                if (x.error() != "cancelled") Q_EMIT failed(QString::fromStdString(x.error()));
                Q_EMIT sweepFinished(false, QString());
                return;
            }
            done += steps;
            SweepRow row;
            row.kind = kind;
            row.scale = s;
            row.seconds = clock.elapsed() / 1000.0;
            const Features fake = fnet->extract(x.value().clamp(-1, 1));
            row.fid = frechet_distance(feature_stats(fake.pooled), realStats);
            const auto pr = precision_recall(real.pooled, fake.pooled, 3);
            row.precision = pr.precision;
            row.recall = pr.recall;
            row.inceptionScore = inception_score(fake.logits, 10).mean;
            row.agreement = class_agreement(fake.logits, target);
            row.diversity = mean_pairwise_distance(fake.pooled, target);
            const int64_t shown = std::min<int64_t>(N, 40);
            row.samples = tensorToImage(imaging::make_grid((x.value().narrow(0, 0, shown).clamp(-1, 1) + 1) / 2, std::min<int64_t>(C, 10), 2, 1.0), 0.0, 1.0);
            Q_EMIT sweepRow(row);
        }
        Q_EMIT sweepFinished(true, tr("real-vs-real floor: FID %1 (training vs test images, N = %2)").arg(floorFid, 0, 'f', 2).arg(N));
    } catch (const std::exception& e) {
        Q_EMIT failed(tr("Sweep failed: %1").arg(QString::fromUtf8(e.what())));
        Q_EMIT sweepFinished(false, QString());
    }
}

void SamplingWorker::loop(int n, int requestId) {
    endChain();  // a chain still running was replaced by this request
    m_stop = false;
    m_activeChain = requestId;
    m_remaining = n;
    QMetaObject::invokeMethod(this, [this, requestId] { chainStep(requestId); }, Qt::QueuedConnection);
}

void SamplingWorker::endChain() {
    if (m_activeChain == 0) return;
    const int id = m_activeChain;
    m_activeChain = 0;
    Q_EMIT chainStopped(m_index, m_sampler ? int(m_sampler->num_steps()) : 0, id);
}

void SamplingWorker::chainStep(int requestId) {
    if (requestId != m_activeChain) return;  // this chain was ended or replaced
    const int total = int(m_sampler->num_steps());
    // Cancellation and newer requests are honoured before every step.
    if (m_index >= total || m_remaining == 0 || m_stop.load() || requestId != m_latest.load()) {
        endChain();
        return;
    }
    c10::NoGradGuard no_grad;
    const bool image = m_model->config.network.kind == NetworkKind::UNet;
    try {
        m_outC = at::Tensor();
        m_outU = at::Tensor();
        m_grad = at::Tensor();
        const int64_t t = m_sampler->timesteps()[size_t(m_index)];
        const double scale = m_guidance->scale_at(t);
        const StepOutput out = m_sampler->step(m_index, m_x, m_denoise, *m_gen);
        m_record.resize(size_t(m_index));
        m_record.push_back(m_x.to(at::kCPU));
        ChainFrame f;
        f.index = m_index;
        f.total = total;
        f.t = int(t);
        f.guidance = scale;
        f.classifierScale = m_grad.defined() ? m_guidance->classifier_scale() : 0.0;
        Autoencoder ae = m_model->autoencoder;
        // Latent models: the latents' channels as images, the predicted x0 decoded each step.
        auto pixels = [&](const at::Tensor& x) { return ae ? ae->decode(x.unsqueeze(0))[0] : x; };
        if (image && ae) {
            f.latent = true;
            f.xt = latentImage(m_x[0]);
            f.x0Latent = latentImage(out.x0[0]);
            f.x0 = tensorToImage(pixels(out.x0[0]));
            f.eps = latentImage(out.eps[0]);
            f.next = m_index + 1 == total ? tensorToImage(pixels(out.x_prev[0])) : latentImage(out.x_prev[0]);
            if (m_outC.defined()) {
                const at::Tensor tt = at::full({1}, t, at::kLong);
                const int64_t ch = m_x.size(1);
                const X0Eps c = m_schedule->split_prediction(m_model->config.prediction, m_outC.narrow(1, 0, ch), m_x, tt);
                const X0Eps u = m_schedule->split_prediction(m_model->config.prediction, m_outU.narrow(1, 0, ch), m_x, tt);
                const double bound = ae->config().latent_clip;
                f.guided = true;
                f.x0Cond = tensorToImage(pixels(c.x0[0].clamp(-bound, bound)));
                f.x0Uncond = tensorToImage(pixels(u.x0[0].clamp(-bound, bound)));
                f.guidanceMap = heatMap(c.eps[0] - u.eps[0]);
            }
        } else if (image) {
            if (m_grad.defined()) f.classifierMap = heatMap(m_grad[0]);
            f.xt = tensorToImage(m_x[0], -1.5, 1.5);
            f.x0 = tensorToImage(out.x0[0]);
            f.eps = tensorToImage(out.eps[0], -3.0, 3.0);
            f.next = tensorToImage(out.x_prev[0]);
            if (m_outC.defined()) {
                const at::Tensor tt = at::full({1}, t, at::kLong);
                const int64_t ch = m_x.size(1);
                const X0Eps c = m_schedule->split_prediction(m_model->config.prediction, m_outC.narrow(1, 0, ch), m_x, tt);
                const X0Eps u = m_schedule->split_prediction(m_model->config.prediction, m_outU.narrow(1, 0, ch), m_x, tt);
                f.guided = true;
                f.x0Cond = tensorToImage(c.x0[0].clamp(-1, 1));
                f.x0Uncond = tensorToImage(u.x0[0].clamp(-1, 1));
                f.guidanceMap = heatMap(c.eps[0] - u.eps[0]);
            }
        }
        m_x = out.x_prev;
        ++m_index;
        Q_EMIT frameReady(f);
        if (m_remaining > 0) --m_remaining;
    } catch (const std::exception& e) {
        Q_EMIT failed(tr("Sampling failed: %1").arg(QString::fromUtf8(e.what())));
        endChain();
        return;
    }
    if (m_index >= total || m_remaining == 0) endChain();
    else QMetaObject::invokeMethod(this, [this, requestId] { chainStep(requestId); }, Qt::QueuedConnection);
}

void SamplingWorker::startToyChain(const ToyChainRequest& request, int requestId) {
    if (requestId != m_latestToy.load()) return;  // a newer toy request is queued
    const QString error = m_toy.start(request);
    if (!error.isEmpty()) {
        Q_EMIT toyFailed(error, requestId);
        return;
    }
    QMetaObject::invokeMethod(this, [this, requestId] { toyStep(requestId); }, Qt::QueuedConnection);
}

void SamplingWorker::toyStep(int requestId) {
    if (requestId != m_latestToy.load() || !m_toy.active()) return;  // cancelled or replaced
    try {
        const ToyFrame f = m_toy.step();
        Q_EMIT toyFrame(f, requestId);
        if (!f.last) QMetaObject::invokeMethod(this, [this, requestId] { toyStep(requestId); }, Qt::QueuedConnection);
    } catch (const std::exception& e) {
        m_toy.reset();
        Q_EMIT toyFailed(QString::fromUtf8(e.what()), requestId);
    }
}

void SamplingWorker::requestForward(const ForwardRequest& request) {
    std::lock_guard<std::mutex> lock(m_forwardMutex);
    m_forwardPending = request;
    if (m_forwardPosted) return;  // a serve event is queued and will take this one
    m_forwardPosted = true;
    QMetaObject::invokeMethod(this, [this] { serveForward(); }, Qt::QueuedConnection);
}

ModelImageShape SamplingWorker::modelImageShape() const {
    ModelImageShape shape;
    if (!m_model) return shape;
    if (m_model->autoencoder) {
        shape.channels = int(m_model->autoencoder->config().in_channels);
        shape.size = int(m_model->autoencoder->config().image_size);
    } else if (m_model->config.network.kind == NetworkKind::UNet) {
        shape.channels = int(m_model->config.network.in_channels);
        shape.size = int(m_model->config.network.image_size);
    }
    return shape;
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
