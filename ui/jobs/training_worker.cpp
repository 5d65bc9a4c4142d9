#include "ui/jobs/training_worker.h"

#include <cmath>

#include <QDir>
#include <QJsonDocument>
#include <QSaveFile>

#include <torch/torch.h>

#include "core/sampling/generate.h"
#include "core/runtime/runtime.h"
#include "core/forward/schedule.h"
#include "core/gan/gan_trainer.h"
#include "core/training/trainer.h"
#include "imaging/image_folder.h"
#include "imaging/image_io.h"
#include "ui/common/tensor_image.h"

namespace dlab::ui {

namespace {

bool writeJson(const QString& path, const QJsonObject& o) {
    QSaveFile f(path);  // written to a temporary file, renamed on commit
    if (!f.open(QIODevice::WriteOnly)) return false;
    f.write(QJsonDocument(o).toJson());
    return f.commit();
}

}  // namespace

TrainingWorker::TrainingWorker() {
    qRegisterMetaType<dlab::ui::TrainingRequest>();
    qRegisterMetaType<dlab::ui::TrainingUpdate>();
    qRegisterMetaType<dlab::ui::TrainingOutcome>();
}

void TrainingWorker::run(const TrainingRequest& request) {
    m_stop = false;
    TrainingOutcome out;
    out.outDir = request.outDir;
    auto fail = [&](const QString& message) {
        out.ok = false;
        out.message = message;
        Q_EMIT finished(out);
    };
    // A run that ended without error (finished, or stopped with a checkpoint): the same report for
    // both model families.
    auto succeed = [&](int64_t stepsDone, bool cancelled, double seconds, double imagesPerS, int64_t total) {
        out.ok = true;
        out.stopped = cancelled;
        out.stepsDone = stepsDone;
        out.seconds = seconds;
        out.imagesPerS = imagesPerS;
        out.modelPath = request.outDir + QStringLiteral("/model.safetensors");
        out.message = cancelled ? tr("Stopped at step %1 of %2; resume continues from the checkpoint").arg(stepsDone).arg(total)
                                : tr("Finished %1 steps in %2 s").arg(stepsDone).arg(seconds, 0, 'f', 1);
    };
    try {
        if (request.outDir.isEmpty()) return fail(tr("No run folder was given"));
        auto device = select_device(request.device.toStdString());
        if (!device) return fail(QString::fromStdString(device.error()));
        const std::string spec = request.dataset.toStdString();
        Result<LabelledData> data = Error{""};
        if (spec.rfind("images:", 0) == 0) {
            imaging::ImageFolderOptions io;
            io.size = request.imageSize;
            io.channels = request.channels;
            data = imaging::load_image_folder(spec.substr(7), io, nullptr);
        } else {
            data = load_builtin_dataset(spec);
        }
        if (!data) return fail(QString::fromStdString(data.error()));
        if (request.family == QStringLiteral("gan")) {
            // One big step: a GAN on image data, the size preset setting its width.
            if (data->x.dim() != 4) return fail(tr("A GAN needs image data (Fashion-MNIST or an image folder), not 2-D points"));
            GanConfig gc;
            gc.image_size = data->x.size(2);
            gc.channels = data->x.size(1);
            gc.num_classes = data->num_classes;
            gc.base_channels = request.sizePreset == QStringLiteral("tiny") ? 16 : request.sizePreset == QStringLiteral("large") ? 64 : 32;
            if (auto st = gc.validate(); !st) return fail(QString::fromStdString(st.error()) + tr(" (image folders: a side that is a multiple of 4)"));
            GanTrainConfig tc;
            tc.steps = request.steps;
            tc.batch = std::max<qint64>(2, request.batch);
            tc.lr_g = tc.lr_d = request.lr;
            tc.seed = request.seed;
            tc.log_every = std::max(1, request.logEvery);
            tc.checkpoint_every = std::max(1, request.checkpointEvery);
            Q_EMIT started(tr("%1 · GAN (base %2 channels, z %3) · %4 images · %5")
                               .arg(request.dataset).arg(gc.base_channels).arg(gc.z_dim).arg(data->x.size(0))
                               .arg(QString::fromStdString(device->str())));
            if (!request.resume) {
                QDir().mkpath(request.outDir);
                writeJson(request.outDir + QStringLiteral("/request.json"), request.toJson());
            }
            GanTrainHooks hooks;
            hooks.cancel = &m_stop;
            hooks.pause = &m_pause;
            hooks.on_progress = [this, lr = request.lr](const GanTrainProgress& p) {
                TrainingUpdate u{p.step, p.total, p.g_loss, lr, p.images_per_s, p.eta_s};
                u.dLoss = p.d_loss;
                Q_EMIT progress(u);
            };
            hooks.snapshot_every = request.sampleEvery;
            hooks.on_snapshot = [this, seed = request.seed](int64_t step, GeneratorImpl& g) {
                const int64_t C = g.config().num_classes;
                const int64_t n = C > 0 ? 2 * C : 16;
                const at::Tensor x = gan_generate(g, n, at::Tensor(), seed + 7, n);
                const at::Tensor grid = imaging::make_grid((x.clamp(-1, 1) + 1) / 2, C > 0 ? C : 8, 2, 1.0);
                Q_EMIT samplesReady(tensorToImage(grid, 0.0, 1.0), step);
            };
            auto r = train_gan(gc, tc, data.value(), device.value(), request.outDir.toStdString(),
                               request.resume ? TrainStart::Resume : TrainStart::New, hooks);
            if (!r) return fail(QString::fromStdString(r.error()));
            succeed(r->steps_done, r->cancelled, r->seconds, r->images_per_s, tc.steps);
            if (r->collapsed)
                out.message += tr(" · collapsed: the samples' diversity is %1 of the data's (below %2); the model is marked collapsed")
                                   .arg(r->diversity_ratio, 0, 'f', 2).arg(kGanCollapseRatio);
            Q_EMIT finished(out);
            return;
        }
        ModelConfig mc;
        shape_network_for_data(data.value(), mc.network);
        if (auto st = apply_size_preset(request.sizePreset.toStdString(), mc.network); !st)
            return fail(QString::fromStdString(st.error()));
        const auto sk = parse_schedule_kind(request.schedule.toStdString());
        if (!sk) return fail(tr("Unknown schedule '%1'").arg(request.schedule));
        mc.schedule.kind = *sk;
        mc.schedule.snr_shift = request.snrShift;
        const auto pt = parse_prediction_type(request.prediction.toStdString());
        if (!pt) return fail(tr("Unknown prediction type '%1'").arg(request.prediction));
        mc.prediction = *pt;
        TrainConfig tc;
        tc.steps = request.steps;
        tc.batch = request.batch;
        tc.lr = request.lr;
        tc.warmup = std::min<int64_t>(200, std::max<int64_t>(1, request.steps / 10));
        tc.seed = request.seed;
        tc.log_every = std::max(1, request.logEvery);
        tc.checkpoint_every = std::max(1, request.checkpointEvery);
        auto net = make_network(mc.network);
        if (!net) return fail(QString::fromStdString(net.error()));
        Q_EMIT started(tr("%1 · %2 parameters · %3 examples · %4 schedule · %5 prediction · %6")
                           .arg(request.dataset)
                           .arg(net.value()->parameter_count())
                           .arg(data->x.size(0))
                           .arg(QString::fromStdString(schedule_summary(mc.schedule)), request.prediction,
                                QString::fromStdString(device->str())));
        if (!request.resume) {
            QDir().mkpath(request.outDir);
            writeJson(request.outDir + QStringLiteral("/request.json"), request.toJson());
        }

        const bool image = mc.network.kind == NetworkKind::UNet;
        TrainHooks hooks;
        hooks.cancel = &m_stop;
        hooks.pause = &m_pause;
        hooks.on_progress = [this](const TrainProgress& p) {
            Q_EMIT progress(TrainingUpdate{p.step, p.total, p.loss, p.lr, p.images_per_s, p.eta_s});
        };
        hooks.snapshot_every = request.sampleEvery;
        hooks.on_snapshot = [this, image, seed = request.seed](int64_t step, const ModelConfig& cfg, Network ema) {
            // Samples from the EMA weights with the same noise every time: the grid shows learning,
            // not a new draw. Images: two per class (DDIM 20, conditional); points: 2000 (DDIM 50).
            LoadedModel model;
            model.config = cfg;
            model.network = ema;
            model.used_ema = true;
            GenerateRequest req;
            req.sampler.kind = SamplerKind::Ddim;
            req.sampler.steps = image ? 20 : 50;
            req.sampler.clip_x0 = image;
            const int64_t C = cfg.network.num_classes;
            req.count = image ? (C > 0 ? 2 * C : 16) : 2000;
            if (C > 0) req.labels = at::arange(req.count, at::kLong).remainder(C);
            req.guidance = 1.0;
            req.seed = seed + 7;
            req.batch = req.count;
            req.cancel = &m_stop;
            auto x = generate(model, req);
            if (!x) return;  // cancelled: no grid
            if (image) {
                const int64_t cols = C > 0 ? C : 8;
                const at::Tensor grid = imaging::make_grid((x.value().clamp(-1, 1) + 1) / 2, cols, 2, 1.0);
                Q_EMIT samplesReady(tensorToImage(grid, 0.0, 1.0), step);
            } else {
                Q_EMIT samplesReady(scatterImage(x.value(), 256, 90), step);
            }
        };
        auto r = train(mc, tc, data.value(), device.value(), request.outDir.toStdString(), request.resume ? TrainStart::Resume : TrainStart::New, hooks);
        if (!r) return fail(QString::fromStdString(r.error()));
        succeed(r->steps_done, r->cancelled, r->seconds, r->images_per_s, tc.steps);
        Q_EMIT finished(out);
    } catch (const c10::Error& e) {
        fail(tr("Training failed: %1").arg(QString::fromUtf8(e.what_without_backtrace())));
    } catch (const std::exception& e) {
        fail(tr("Training failed: %1").arg(QString::fromStdString(error_message(e))));
    }
}

}  // namespace dlab::ui
