#include "imaging/image_io.h"

#include <cstdio>
#include <filesystem>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include "core/io/atomic_file.h"

namespace dlab::imaging {

namespace fs = std::filesystem;

cv::Mat tensor_to_mat(const at::Tensor& image) {
    at::Tensor t = image.detach().to(at::kCPU, at::kFloat);
    if (t.dim() == 2) t = t.unsqueeze(0);
    TORCH_CHECK(t.dim() == 3 && (t.size(0) == 1 || t.size(0) == 3),
                "tensor_to_mat expects [C,H,W] with C = 1 or 3, got ", t.sizes());
    at::Tensor u8 = (t.clamp(0.0, 1.0) * 255.0).round().to(at::kByte).permute({1, 2, 0}).contiguous();
    const int h = static_cast<int>(u8.size(0)), w = static_cast<int>(u8.size(1));
    const int c = static_cast<int>(u8.size(2));
    cv::Mat mat(h, w, c == 1 ? CV_8UC1 : CV_8UC3, u8.data_ptr<uint8_t>());
    cv::Mat out = mat.clone();
    if (c == 3) cv::cvtColor(out, out, cv::COLOR_RGB2BGR);
    return out;
}

at::Tensor make_grid(const at::Tensor& batch, int64_t columns, int64_t padding, double pad_value) {
    TORCH_CHECK(batch.dim() == 4, "make_grid expects [N,C,H,W], got ", batch.sizes());
    const int64_t n = batch.size(0), c = batch.size(1), h = batch.size(2), w = batch.size(3);
    const int64_t cols = std::max<int64_t>(1, std::min(columns, n));
    const int64_t rows = (n + cols - 1) / cols;
    at::Tensor grid = at::full({c, rows * (h + padding) + padding, cols * (w + padding) + padding},
                               pad_value, batch.options());
    for (int64_t i = 0; i < n; ++i) {
        const int64_t r = i / cols, k = i % cols;
        grid.narrow(1, padding + r * (h + padding), h)
            .narrow(2, padding + k * (w + padding), w)
            .copy_(batch[i]);
    }
    return grid;
}

namespace {

void put_u32(std::string& out, uint32_t v) {
    out.push_back(static_cast<char>((v >> 24) & 0xff));
    out.push_back(static_cast<char>((v >> 16) & 0xff));
    out.push_back(static_cast<char>((v >> 8) & 0xff));
    out.push_back(static_cast<char>(v & 0xff));
}

// A PNG tEXt chunk: length, type, keyword NUL text, CRC over type and data (PNG spec 11.3.4.3).
std::string text_chunk(const std::string& key, const std::string& value) {
    std::string data = "tEXt" + key + std::string(1, '\0') + value;
    std::string chunk;
    put_u32(chunk, static_cast<uint32_t>(data.size() - 4));
    chunk += data;
    const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(data.data()),
                            static_cast<uInt>(data.size()));
    put_u32(chunk, static_cast<uint32_t>(crc));
    return chunk;
}

}  // namespace

Status write_png(const std::string& path, const cv::Mat& image,
                 const std::vector<std::pair<std::string, std::string>>& text) {
    std::vector<uchar> bytes;
    try {
        if (!cv::imencode(".png", image, bytes)) return Status::failure(path + ": PNG encoding failed");
    } catch (const cv::Exception& e) {
        return Status::failure(path + ": PNG encoding failed: " + e.what());
    }
    std::string png(bytes.begin(), bytes.end());
    if (!text.empty()) {
        // Insert the text chunks right after IHDR (8-byte signature + 25-byte IHDR chunk).
        std::string chunks;
        for (const auto& [k, v] : text) chunks += text_chunk(k, v);
        png.insert(8 + 25, chunks);
    }
    return write_file_atomic(path, png);
}

Result<at::Tensor> read_image(const std::string& path, int channels) {
    if (!fs::exists(path)) return Error{path + ": no such file"};
    cv::Mat mat;
    try {
        mat = cv::imread(path, channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
    } catch (const cv::Exception& e) {
        return Error{path + ": cannot read image: " + e.what()};
    }
    if (mat.empty()) return Error{path + ": not an image OpenCV can read (corrupt or unknown format)"};
    if (channels == 3) cv::cvtColor(mat, mat, cv::COLOR_BGR2RGB);
    at::Tensor t = at::from_blob(mat.data, {mat.rows, mat.cols, mat.channels()}, at::kByte)
                       .clone()
                       .permute({2, 0, 1})
                       .to(at::kFloat)
                       .div_(255.0);
    return t.contiguous();
}

}  // namespace dlab::imaging

#include <opencv2/videoio.hpp>

namespace dlab::imaging {

Status write_video(const std::string& path, const std::vector<at::Tensor>& frames, double fps, int scale) {
    if (frames.empty()) return Status::failure(path + ": no frames to write");
    if (auto st = check_output_path(path); !st) return st;
    const std::string tmp = path + ".part.mp4";
    cv::Mat first = tensor_to_mat(frames.front());
    const cv::Size size(first.cols * scale, first.rows * scale);
    cv::VideoWriter writer;
    try {
        writer.open(tmp, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps, size, true);
    } catch (const cv::Exception& e) {
        return Status::failure(path + ": cannot open a video writer: " + e.what());
    }
    if (!writer.isOpened()) return Status::failure(path + ": cannot open an MP4 writer (OpenCV built without a video backend?)");
    for (const auto& f : frames) {
        cv::Mat m = tensor_to_mat(f), big;
        cv::resize(m, big, size, 0, 0, cv::INTER_NEAREST);
        if (big.channels() == 1) cv::cvtColor(big, big, cv::COLOR_GRAY2BGR);
        writer.write(big);
    }
    writer.release();
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        return Status::failure(path + ": cannot move the finished video into place");
    }
    return Status::success();
}

}  // namespace dlab::imaging
