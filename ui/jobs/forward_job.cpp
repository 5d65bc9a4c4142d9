#include "ui/jobs/forward_job.h"

#include <optional>

#include <QFileInfo>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/data/datasets.h"
#include "core/io/model_catalog.h"
#include "core/runtime/runtime.h"
#include "core/sampling/sampler.h"
#include "core/forward/schedule.h"
#include "imaging/image_io.h"
#include "ui/common/tensor_image.h"

namespace dlab::ui {

at::Tensor imageAtModelSize(const at::Tensor& image01, const ModelImageShape& shape) {
    at::Tensor x = image01.to(at::kFloat);
    if (shape.channels == 1 && x.size(0) == 3) {
        // ITU-R BT.601 luma.
        x = (x[0] * 0.299 + x[1] * 0.587 + x[2] * 0.114).unsqueeze(0);
    } else if (shape.channels == 3 && x.size(0) == 1) {
        x = x.expand({3, -1, -1});
    }
    const int64_t h = x.size(1), w = x.size(2), m = std::min(h, w);
    x = x.narrow(1, (h - m) / 2, m).narrow(2, (w - m) / 2, m).unsqueeze(0);
    const int64_t s = shape.size;
    x = m >= s ? at::adaptive_avg_pool2d(x, {s, s}) : at::upsample_bilinear2d(x, {s, s}, false);
    return (x[0].clamp(0, 1) * 2 - 1).contiguous();
}

QString ForwardJob::load(const ForwardRequest& r, const ModelImageShape& shape) {
    QString key;
    if (r.source == ForwardRequest::Dataset) key = QStringLiteral("dataset:%1:%2").arg(r.classIndex).arg(r.index);
    else if (r.source == ForwardRequest::File) key = QStringLiteral("file:%1:%2:%3").arg(r.path).arg(shape.channels).arg(shape.size);
    else key = QStringLiteral("toy:") + r.toy;
    if (key == m_key && m_x0.defined()) return QString();
    if (r.source == ForwardRequest::Dataset) {
        if (!m_testImages.defined()) {
            auto data = load_fashion_mnist(fashion_mnist_dir(), false);
            if (!data) return QString::fromStdString(data.error());
            m_testImages = data->x;
            m_testLabels = data->labels;
            m_classNames = data->class_names;
        }
        if (r.classIndex < 0 || r.classIndex >= int(m_classNames.size()))
            return QStringLiteral("class %1: Fashion-MNIST has classes 0 to %2").arg(r.classIndex).arg(m_classNames.size() - 1);
        const at::Tensor idx = at::nonzero(m_testLabels == r.classIndex).flatten();
        if (idx.numel() == 0) return QStringLiteral("class %1 has no test images").arg(r.classIndex);
        const int64_t i = idx[std::max(0, r.index) % idx.numel()].item<int64_t>();
        m_x0 = m_testImages[i];
        m_points = false;
        m_eps = at::randn(m_x0.sizes(), make_generator(quint64(r.classIndex * 1000 + r.index)), at::TensorOptions().dtype(at::kFloat));
        m_message = QStringLiteral("Fashion-MNIST test image %1 (%2)").arg(i).arg(QString::fromStdString(m_classNames[size_t(r.classIndex)]));
    } else if (r.source == ForwardRequest::File) {
        auto img = imaging::read_image(r.path.toStdString(), 3);
        if (!img) return QString::fromStdString(img.error());
        const int64_t h = img->size(1), w = img->size(2);
        m_x0 = imageAtModelSize(img.value(), shape);
        m_points = false;
        m_eps = at::randn(m_x0.sizes(), make_generator(7), at::TensorOptions().dtype(at::kFloat));
        m_message = QStringLiteral("Your image %1 (%2x%3), centre-cropped and resized to the model's %4x%4 %5")
                        .arg(QFileInfo(r.path).fileName()).arg(w).arg(h).arg(shape.size)
                        .arg(shape.channels == 1 ? QStringLiteral("grey") : QStringLiteral("RGB"));
    } else {
        auto data = make_toy(r.toy.toStdString(), 2000, 3);
        if (!data) return QString::fromStdString(data.error());
        m_x0 = data->x;
        m_points = true;
        m_eps = at::randn(m_x0.sizes(), make_generator(5), at::TensorOptions().dtype(at::kFloat));
        m_message = QStringLiteral("2-D toy set '%1' (2000 points)").arg(r.toy);
    }
    m_key = key;
    m_z0 = at::Tensor();
    return QString();
}

ForwardResult ForwardJob::compute(const ForwardRequest& r, const ModelImageShape& shape) {
    ForwardResult out;
    out.request = r;
    c10::NoGradGuard ng;
    try {
        const QString error = load(r, shape);
        if (!error.isEmpty()) {
            out.error = error;
            return out;
        }
        const int t = std::clamp(r.t, 0, kT - 1);
        out.message = m_message;
        out.points = m_points;
        out.original = m_points ? scatterImage(m_x0, 220, 110) : tensorToImage(m_x0);
        for (int i = 0; i < kStrip; ++i) out.stripT << (kT - 1) * i / (kStrip - 1);
        std::optional<NoiseSchedule> scheduleB;
        for (int which = 0; which < 2; ++which) {
            ScheduleConfig c;
            c.kind = ScheduleKind(which == 0 ? r.scheduleA : r.scheduleB);
            c.timesteps = kT;
            auto created = NoiseSchedule::create(c);
            if (!created) {
                out.error = QString::fromStdString(created.error());
                return out;
            }
            const NoiseSchedule& s = created.value();
            auto noised = [&](int tt) {
                if (m_points) return scatterImage(s.add_noise(m_x0, m_eps, at::full({m_x0.size(0)}, tt, at::kLong)), 220, 110);
                const at::Tensor xt = s.add_noise(m_x0.unsqueeze(0), m_eps.unsqueeze(0), at::full({1}, tt, at::kLong));
                return tensorToImage(xt[0].clamp(-1, 1));
            };
            (which == 0 ? out.a : out.b) = noised(t);
            auto& strip = which == 0 ? out.stripA : out.stripB;
            for (int tt : out.stripT) strip << noised(tt);
            (which == 0 ? out.nameA : out.nameB) = QString::fromStdString(to_string(c.kind));
            (which == 0 ? out.alphaBarA : out.alphaBarB) = s.alpha_bar(t);
            const at::Tensor snr = s.snr();
            (which == 0 ? out.snrA : out.snrB) = snr[t].item<double>();
            (which == 0 ? out.curveA : out.curveB) = toDoubles(s.alpha_bars());
            (which == 0 ? out.snrCurveA : out.snrCurveB) = toDoubles(snr.clamp_min(1e-8));
            if (which == 1) scheduleB = s;
        }
        if (r.latent && !m_points) {
            if (!m_autoencoder) {
                auto path = resolve_model("fashion-mnist-autoencoder");
                auto ae = path ? load_autoencoder(path.value(), at::kCPU) : Result<Autoencoder>(Error{path.error()});
                if (!ae) {
                    out.latentError = QString::fromStdString(ae.error());
                    return out;
                }
                m_autoencoder = ae.value();
            }
            // Encode x0 (resized and grey for the autoencoder when needed), noise the latent with
            // schedule B and decode x_t at t and along the strip in one batch.
            const auto& ac = m_autoencoder->config();
            if (!m_z0.defined()) {
                at::Tensor x = m_x0.unsqueeze(0);
                if (x.size(1) != ac.in_channels) x = x.mean(1, true);
                if (x.size(2) != ac.image_size || x.size(3) != ac.image_size)
                    x = at::upsample_bilinear2d(x, {ac.image_size, ac.image_size}, false);
                m_z0 = m_autoencoder->encode(x);
                m_zeps = at::randn(m_z0.sizes(), make_generator(11), at::TensorOptions().dtype(at::kFloat));
            }
            std::vector<int64_t> ts{t};
            for (int tt : out.stripT) ts.push_back(tt);
            const int64_t n = int64_t(ts.size());
            const at::Tensor zt = scheduleB->add_noise(m_z0.expand({n, -1, -1, -1}), m_zeps.expand({n, -1, -1, -1}),
                                                      at::tensor(ts, at::TensorOptions().dtype(at::kLong)));
            const at::Tensor dec = m_autoencoder->decode(zt);
            out.latent = tensorToImage(dec[0]);
            for (int i = 0; i < kStrip; ++i) out.stripL << tensorToImage(dec[i + 1]);
        }
    } catch (const std::exception& e) {
        out.error = QString::fromStdString(error_message(e));
    }
    return out;
}

}  // namespace dlab::ui
