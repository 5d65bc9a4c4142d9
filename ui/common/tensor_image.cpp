#include "ui/common/tensor_image.h"

#include <cmath>
#include <cstring>

#include <QPainter>

#include <ATen/ATen.h>

namespace dlab::ui {

QImage tensorToImage(const at::Tensor& image, double lo, double hi) {
    at::Tensor t = image.detach().to(at::kCPU, at::kFloat);
    if (t.dim() == 2) t = t.unsqueeze(0);
    const int c = int(t.size(0)), h = int(t.size(1)), w = int(t.size(2));
    const at::Tensor u8 = ((t - lo) / (hi - lo) * 255.0).clamp(0, 255).round().to(at::kByte).contiguous();
    const uint8_t* p = u8.data_ptr<uint8_t>();
    if (c == 1) {
        QImage img(w, h, QImage::Format_Grayscale8);
        for (int y = 0; y < h; ++y) memcpy(img.scanLine(y), p + y * w, size_t(w));
        return img;
    }
    QImage img(w, h, QImage::Format_RGB32);
    for (int y = 0; y < h; ++y) {
        auto* line = reinterpret_cast<QRgb*>(img.scanLine(y));
        for (int x = 0; x < w; ++x)
            line[x] = qRgb(p[0 * h * w + y * w + x], p[1 * h * w + y * w + x], p[2 * h * w + y * w + x]);
    }
    return img;
}

QImage latentImage(const at::Tensor& latent, double range) {
    const at::Tensor z = latent.detach().to(at::kCPU, at::kFloat);
    const int L = int(z.size(0)), h = int(z.size(1)), w = int(z.size(2));
    const int cols = int(std::ceil(std::sqrt(double(L)))), rows = (L + cols - 1) / cols;
    QImage img(cols * (w + 1) - 1, rows * (h + 1) - 1, QImage::Format_Grayscale8);
    img.fill(128);
    for (int k = 0; k < L; ++k) {
        const QImage tile = tensorToImage(z[k].unsqueeze(0), -range, range);
        const int ox = (k % cols) * (w + 1), oy = (k / cols) * (h + 1);
        for (int y = 0; y < h; ++y) memcpy(img.scanLine(oy + y) + ox, tile.constScanLine(y), size_t(w));
    }
    return img;
}

QImage heatMap(const at::Tensor& values, double range) {
    at::Tensor v = values.detach().to(at::kCPU, at::kFloat);
    if (v.dim() == 3) v = v.mean(0);
    const double r = range > 0 ? range : std::max(1e-8, v.abs().max().item<double>());
    const at::Tensor n = (v / r).clamp(-1, 1).contiguous();
    const int h = int(n.size(0)), w = int(n.size(1));
    const float* p = n.data_ptr<float>();
    QImage img(w, h, QImage::Format_RGB32);
    for (int y = 0; y < h; ++y) {
        auto* line = reinterpret_cast<QRgb*>(img.scanLine(y));
        for (int x = 0; x < w; ++x) {
            const float a = p[y * w + x];
            const int k = int(255 * (1 - std::abs(a)));
            line[x] = a >= 0 ? qRgb(255, k, k) : qRgb(k, k, 255);  // red positive, blue negative
        }
    }
    return img;
}

QImage scatterImage(const at::Tensor& points, int size, int alpha) {
    QImage img(size, size, QImage::Format_RGB32);
    img.fill(QColor(252, 252, 252));
    QPainter p(&img);
    p.setRenderHint(QPainter::Antialiasing);
    const double c = size / 2.0, unit = size / 8.0;
    p.setPen(QPen(QColor(200, 200, 200), 1));
    p.drawLine(QPointF(c, 0), QPointF(c, size));
    p.drawLine(QPointF(0, c), QPointF(size, c));
    p.setPen(Qt::NoPen);
    p.setBrush(QColor(31, 119, 180, alpha));
    const at::Tensor pts = points.to(at::kCPU, at::kFloat).contiguous();
    const float* d = pts.data_ptr<float>();
    for (int64_t i = 0; i < pts.size(0); ++i) {
        const double x = c + d[2 * i] * unit, y = c - d[2 * i + 1] * unit;
        if (std::isfinite(x) && std::isfinite(y)) p.drawEllipse(QPointF(x, y), 1.6, 1.6);
    }
    return img;
}

QVector<double> toDoubles(const at::Tensor& values) {
    const at::Tensor c = values.to(at::kCPU, at::kDouble).contiguous();
    return QVector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace dlab::ui
