// The OpenCV imaging backend (the normal build): codecs, resizing and MP4 video through OpenCV,
// and the cv::Mat functions of image_io.h.
#include <filesystem>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "core/io/atomic_file.h"
#include "imaging/backend.h"
#include "imaging/image_io.h"

namespace dlab::imaging {

cv::Mat tensor_to_mat(const at::Tensor& image) {
    at::Tensor u8 = to_hwc8(image);
    const int h = static_cast<int>(u8.size(0)), w = static_cast<int>(u8.size(1));
    const int c = static_cast<int>(u8.size(2));
    cv::Mat out = cv::Mat(h, w, c == 1 ? CV_8UC1 : CV_8UC3, u8.data_ptr<uint8_t>()).clone();
    if (c == 3) cv::cvtColor(out, out, cv::COLOR_RGB2BGR);
    return out;
}

Status write_png(const std::string& path, const cv::Mat& image,
                 const std::vector<std::pair<std::string, std::string>>& text) {
    if (auto st = check_output_path(path, ".png"); !st) return st;
    std::vector<uchar> bytes;
    try {
        if (!cv::imencode(".png", image, bytes)) return Status::failure(path + ": PNG encoding failed");
    } catch (const cv::Exception& e) {
        return Status::failure(path + ": PNG encoding failed: " + e.what());
    }
    return write_file_atomic(path, with_text_chunks(std::string(bytes.begin(), bytes.end()), text));
}

namespace {
// OpenCV's decoder on bytes that passed check_decodable: grey or BGR, 8-bit.
Result<cv::Mat> imdecode_checked(const std::vector<unsigned char>& bytes, const std::string& name, int channels) {
    cv::Mat mat;
    try {
        mat = cv::imdecode(bytes, channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
    } catch (const cv::Exception& e) {
        return Error{name + ": cannot read image: " + e.err};
    }
    if (mat.empty() || mat.cols < 1 || mat.rows < 1)
        return Error{name + ": not an image OpenCV can read (corrupt or unknown format)"};
    if (int64_t(mat.cols) * mat.rows > kMaxImagePixels)
        return Error{name + ": " + std::to_string(mat.cols) + "x" + std::to_string(mat.rows) + " pixels is too large"};
    if (mat.depth() != CV_8U) mat.convertTo(mat, CV_8U, mat.depth() == CV_16U ? 1.0 / 257.0 : 1.0);
    return mat;
}
}  // namespace

Result<cv::Mat> decode_image(const std::vector<unsigned char>& bytes, const std::string& name, int channels) {
    if (auto st = check_decodable(bytes, name, channels); !st) return Error{st.error()};
    return imdecode_checked(bytes, name, channels);
}

namespace {
at::Tensor mat_to_hwc(const cv::Mat& m) {
    return at::from_blob(m.data, {m.rows, m.cols, m.channels()}, at::kByte).clone();
}
cv::Mat hwc_to_mat(const at::Tensor& hwc) {
    at::Tensor c = hwc.contiguous();
    return cv::Mat(int(c.size(0)), int(c.size(1)), c.size(2) == 1 ? CV_8UC1 : CV_8UC3, c.data_ptr<uint8_t>()).clone();
}
}  // namespace

namespace backend {

Result<at::Tensor> decode(const std::vector<unsigned char>& bytes, const std::string& name, int channels) {
    auto decoded = imdecode_checked(bytes, name, channels);  // decode_to_tensor ran the checks
    if (!decoded) return Error{decoded.error()};
    cv::Mat mat = decoded.value();
    if (channels == 3) cv::cvtColor(mat, mat, cv::COLOR_BGR2RGB);
    return mat_to_hwc(mat);
}

at::Tensor fit_square(const at::Tensor& hwc, int size) {
    const cv::Mat img = hwc_to_mat(hwc);
    // Centre-crop to a square first, then resize: resizing the short side first made a 999999x1
    // image 32 million pixels wide (gigabytes) before the crop.
    const int m = std::min(img.cols, img.rows);
    const cv::Mat square = img(cv::Rect((img.cols - m) / 2, (img.rows - m) / 2, m, m));
    cv::Mat resized;
    cv::resize(square, resized, cv::Size(size, size), 0, 0, m > size ? cv::INTER_AREA : cv::INTER_LINEAR);
    return mat_to_hwc(resized);
}

Result<std::string> encode_png(const at::Tensor& hwc, const std::string& name) {
    cv::Mat mat = hwc_to_mat(hwc);
    if (mat.channels() == 3) cv::cvtColor(mat, mat, cv::COLOR_RGB2BGR);
    std::vector<uchar> bytes;
    try {
        if (!cv::imencode(".png", mat, bytes)) return Error{name + ": PNG encoding failed"};
    } catch (const cv::Exception& e) {
        return Error{name + ": PNG encoding failed: " + e.what()};
    }
    return std::string(bytes.begin(), bytes.end());
}

Status write_video(const std::string& tmp, const std::string& name, const std::vector<at::Tensor>& frames,
                   double fps, int scale) {
    cv::Mat first = tensor_to_mat(frames.front());
    const cv::Size size(first.cols * scale, first.rows * scale);
    cv::VideoWriter writer;
    try {
        writer.open(tmp, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps, size, true);
    } catch (const cv::Exception& e) {
        return Status::failure(name + ": cannot open a video writer: " + e.what());
    }
    if (!writer.isOpened()) return Status::failure(name + ": cannot open an MP4 writer (OpenCV built without a video backend?)");
    for (const auto& f : frames) {
        cv::Mat m = tensor_to_mat(f), big;
        cv::resize(m, big, size, 0, 0, cv::INTER_NEAREST);
        if (big.channels() == 1) cv::cvtColor(big, big, cv::COLOR_GRAY2BGR);
        writer.write(big);
    }
    writer.release();
    return Status::success();
}

}  // namespace backend
}  // namespace dlab::imaging
