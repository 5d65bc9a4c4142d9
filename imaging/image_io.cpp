#include "imaging/image_io.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <zlib.h>

#include "core/io/atomic_file.h"
#include "imaging/backend.h"

namespace dlab::imaging {

namespace fs = std::filesystem;

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

std::string with_text_chunks(std::string png, const std::vector<std::pair<std::string, std::string>>& text) {
    if (text.empty()) return png;
    // Insert the text chunks right after IHDR (8-byte signature + 25-byte IHDR chunk).
    std::string chunks;
    for (const auto& [k, v] : text) chunks += text_chunk(k, v);
    png.insert(8 + 25, chunks);
    return png;
}

at::Tensor to_hwc8(const at::Tensor& image) {
    at::Tensor t = image.detach().to(at::kCPU, at::kFloat);
    if (t.dim() == 2) t = t.unsqueeze(0);
    TORCH_CHECK(t.dim() == 3 && (t.size(0) == 1 || t.size(0) == 3),
                "an image must be [C,H,W] with C = 1 or 3, got ", t.sizes());
    return (t.clamp(0.0, 1.0) * 255.0).round().to(at::kByte).permute({1, 2, 0}).contiguous();
}

Status write_png(const std::string& path, const at::Tensor& image,
                 const std::vector<std::pair<std::string, std::string>>& text) {
    if (auto st = check_output_path(path, ".png"); !st) return st;
    auto png = backend::encode_png(to_hwc8(image), path);
    if (!png) return Status::failure(png.error());
    return write_file_atomic(path, with_text_chunks(std::move(png.value()), text));
}

namespace {

uint32_t be(const unsigned char* p, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
    return v;
}
uint32_t le(const unsigned char* p, int n) {
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// Width and height from the header of a PNG, GIF, BMP or JPEG file; {-1, -1} when the format is
// none of these or the header does not say.
std::pair<int64_t, int64_t> header_size(const unsigned char* h, size_t got) {
    if (got >= 24 && h[0] == 0x89 && h[1] == 'P' && h[2] == 'N' && h[3] == 'G') return {be(&h[16], 4), be(&h[20], 4)};
    if (got >= 10 && h[0] == 'G' && h[1] == 'I' && h[2] == 'F') return {le(&h[6], 2), le(&h[8], 2)};
    if (got >= 26 && h[0] == 'B' && h[1] == 'M') {
        const int32_t w = int32_t(le(&h[18], 4)), hh = int32_t(le(&h[22], 4));
        return {std::abs(int64_t(w)), std::abs(int64_t(hh))};
    }
    if (got >= 4 && h[0] == 0xFF && h[1] == 0xD8) {
        // JPEG: walk the segments to the first start-of-frame marker.
        size_t at = 2;
        for (int guard = 0; guard < 100000 && at + 2 <= got; ++guard) {
            const unsigned char* m = h + at;
            if (m[0] != 0xFF) break;
            at += 2;
            if (m[1] == 0xD8 || (m[1] >= 0xD0 && m[1] <= 0xD7) || m[1] == 0x01 || m[1] == 0xFF) {
                if (m[1] == 0xFF) at -= 1;  // fill bytes before a marker
                continue;
            }
            if (at + 2 > got) break;
            const uint32_t n = be(h + at, 2);
            const bool frame = m[1] >= 0xC0 && m[1] <= 0xCF && m[1] != 0xC4 && m[1] != 0xC8 && m[1] != 0xCC;
            if (frame) {
                if (at + 7 > got) break;
                return {be(h + at + 5, 2), be(h + at + 3, 2)};
            }
            if (n < 2) break;
            at += n;
        }
    }
    return {-1, -1};
}

}  // namespace

Status check_image_header(const unsigned char* bytes, size_t size, const std::string& name) {
    const auto [w, h] = header_size(bytes, size);
    if (w < 0) return Status::success();  // another format: the decoder decides
    if (w < 1 || h < 1 || w > (1 << 20) || h > (1 << 20) || w * h > kMaxImagePixels)
        return Status::failure(name + ": the image declares " + std::to_string(w) + "x" + std::to_string(h) +
                               " pixels; at most " + std::to_string(kMaxImagePixels / (1 << 20)) +
                               " megapixels and 1048576 a side are read");
    return Status::success();
}

Result<std::vector<unsigned char>> read_image_bytes(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return Error{path + ": no such file"};
    if (!fs::is_regular_file(path, ec)) return Error{path + ": not a regular file"};
    const auto size = fs::file_size(path, ec);
    if (ec) return Error{path + ": cannot read its size: " + ec.message()};
    // The size before the read: an image file beyond the largest decodable image is not read.
    if (int64_t(size) > kMaxImageFileBytes)
        return Error{path + ": " + std::to_string(size >> 20) + " MB; image files of at most " +
                     std::to_string(kMaxImageFileBytes >> 20) + " MB are read"};
    std::vector<unsigned char> bytes(size);
    std::ifstream in(path, std::ios::binary);
    if (!in || !in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size)))
        return Error{path + ": cannot be read"};
    return bytes;
}

namespace {

// Only these formats reach OpenCV's decoders, recognised by their first bytes: OpenCV would try
// every codec it was built with, and some abort the process on malformed input (the DICOM reader,
// GDCM, asserts: found by fuzz/fuzz_image).
bool known_image_format(const std::vector<unsigned char>& b) {
    auto starts = [&b](std::initializer_list<unsigned char> magic, size_t at = 0) {
        if (b.size() < at + magic.size()) return false;
        size_t i = at;
        for (unsigned char m : magic)
            if (b[i++] != m) return false;
        return true;
    };
    return starts({0x89, 'P', 'N', 'G'}) || starts({0xFF, 0xD8, 0xFF}) || starts({'B', 'M'}) ||
           starts({'G', 'I', 'F', '8'}) || starts({'I', 'I', 0x2A, 0x00}) || starts({'M', 'M', 0x00, 0x2A}) ||
           (starts({'R', 'I', 'F', 'F'}) && starts({'W', 'E', 'B', 'P'}, 8)) ||
           (b.size() >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6');
}

}  // namespace

Status check_decodable(const std::vector<unsigned char>& bytes, const std::string& name, int channels) {
    if (channels != 1 && channels != 3) return Status::failure(name + ": images are read with 1 or 3 channels");
    if (bytes.empty()) return Status::failure(name + ": an empty file");
    if (!known_image_format(bytes)) return Status::failure(name + ": not a PNG, JPEG, BMP, GIF, TIFF, WebP or PNM image");
    return check_image_header(bytes.data(), bytes.size(), name);
}

Result<at::Tensor> decode_to_tensor(const std::vector<unsigned char>& bytes, const std::string& name, int channels) {
    if (auto st = check_decodable(bytes, name, channels); !st) return Error{st.error()};
    auto hwc = backend::decode(bytes, name, channels);
    if (!hwc) return Error{hwc.error()};
    const int64_t h = hwc->size(0), w = hwc->size(1);
    if (h < 1 || w < 1) return Error{name + ": not an image that can be read (corrupt or unknown format)"};
    if (w * h > kMaxImagePixels)
        return Error{name + ": " + std::to_string(w) + "x" + std::to_string(h) + " pixels is too large"};
    return hwc;
}

Result<at::Tensor> read_image(const std::string& path, int channels) {
    auto bytes = read_image_bytes(path);
    if (!bytes) return Error{bytes.error()};
    auto hwc = decode_to_tensor(bytes.value(), path, channels);
    if (!hwc) return Error{hwc.error()};
    return hwc->permute({2, 0, 1}).to(at::kFloat).div_(255.0).contiguous();
}

Status write_video(const std::string& path, const std::vector<at::Tensor>& frames, double fps, int scale) {
    if (frames.empty()) return Status::failure(path + ": no frames to write");
    if (auto st = check_output_path(path, ".mp4"); !st) return st;
    const std::string tmp = path + ".part.mp4";
    if (auto st = backend::write_video(tmp, path, frames, fps, scale); !st) {
        std::error_code ec;
        fs::remove(tmp, ec);
        return st;
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        return Status::failure(path + ": cannot move the finished video into place");
    }
    return Status::success();
}

}  // namespace dlab::imaging
