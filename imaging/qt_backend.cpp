// The Qt imaging backend, for a GUI built where OpenCV is not installed (a GPU server): decoding,
// resizing and PNG encoding through QImage; no video encoder.
#include <cstring>

#include <ATen/ATen.h>
#include <QBuffer>
#include <QByteArray>
#include <QImage>

#include "imaging/backend.h"

namespace dlab::imaging::backend {

namespace {
// An 8-bit QImage (Grayscale8 or RGB888) as [H, W, C], row padding dropped.
at::Tensor image_to_hwc(const QImage& img) {
    const int c = img.format() == QImage::Format_Grayscale8 ? 1 : 3;
    at::Tensor out = at::empty({img.height(), img.width(), c}, at::kByte);
    const size_t row = size_t(img.width()) * c;
    for (int y = 0; y < img.height(); ++y) std::memcpy(out.data_ptr<uint8_t>() + y * row, img.constScanLine(y), row);
    return out;
}
QImage hwc_to_image(const at::Tensor& hwc) {
    const at::Tensor c = hwc.contiguous();
    const int h = int(c.size(0)), w = int(c.size(1)), ch = int(c.size(2));
    QImage img(w, h, ch == 1 ? QImage::Format_Grayscale8 : QImage::Format_RGB888);
    const size_t row = size_t(w) * ch;
    for (int y = 0; y < h; ++y) std::memcpy(img.scanLine(y), c.data_ptr<uint8_t>() + y * row, row);
    return img;
}
}  // namespace

Result<at::Tensor> decode(const std::vector<unsigned char>& bytes, const std::string& name, int channels) {
    QImage img;
    if (!img.loadFromData(bytes.data(), int(bytes.size())) || img.isNull())
        return Error{name + ": not an image Qt can read (corrupt, or a format without a Qt image plugin)"};
    return image_to_hwc(img.convertToFormat(channels == 1 ? QImage::Format_Grayscale8 : QImage::Format_RGB888));
}

at::Tensor fit_square(const at::Tensor& hwc, int size) {
    const QImage img = hwc_to_image(hwc);
    const int m = std::min(img.width(), img.height());
    const QImage square = img.copy((img.width() - m) / 2, (img.height() - m) / 2, m, m);
    return image_to_hwc(square.scaled(size, size, Qt::IgnoreAspectRatio, Qt::SmoothTransformation));
}

Result<std::string> encode_png(const at::Tensor& hwc, const std::string& name) {
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    if (!hwc_to_image(hwc).save(&buffer, "PNG")) return Error{name + ": PNG encoding failed"};
    return std::string(bytes.constData(), size_t(bytes.size()));
}

Status write_video(const std::string&, const std::string& name, const std::vector<at::Tensor>&, double, int) {
    return Status::failure(name + ": this build writes no video (it was built without OpenCV)");
}

}  // namespace dlab::imaging::backend
