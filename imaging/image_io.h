#pragma once
// Image files and tensor <-> image conversion. Beside core, never inside it. The backend is OpenCV
// (DLAB_IMAGING_OPENCV: also the cv::Mat functions below and MP4 video); a GUI built where OpenCV
// is not installed (a GPU server) uses Qt's image classes instead, with no video.

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#ifdef DLAB_IMAGING_OPENCV
#include <opencv2/core/mat.hpp>
#endif

#include "core/runtime/result.h"

namespace dlab::imaging {

#ifdef DLAB_IMAGING_OPENCV
/// Converts a [C,H,W] or [H,W] float tensor with values in [0,1] (C = 1 or 3, RGB order) to an
/// 8-bit cv::Mat (grey, or BGR for OpenCV). Values outside [0,1] are clamped.
cv::Mat tensor_to_mat(const at::Tensor& image);
#endif

/// Lays out a batch [N,C,H,W] in [0,1] as a grid with `columns` columns and a `padding`-pixel
/// border, returning a [C,H',W'] tensor.
at::Tensor make_grid(const at::Tensor& batch, int64_t columns, int64_t padding = 2,
                     double pad_value = 1.0);

/// Writes a [C,H,W] or [H,W] float image in [0,1] (C = 1 or 3, RGB; clamped) as an 8-bit PNG
/// through a temporary file renamed into place, so an existing file is never left half-written.
/// Text chunks (key, value) are written as PNG tEXt. (The cv::Mat overload: an 8-bit grey or BGR
/// image, OpenCV builds only.)
Status write_png(const std::string& path, const at::Tensor& image,
                 const std::vector<std::pair<std::string, std::string>>& text = {});
#ifdef DLAB_IMAGING_OPENCV
Status write_png(const std::string& path, const cv::Mat& image,
                 const std::vector<std::pair<std::string, std::string>>& text = {});
#endif

/// The largest image read (pixels): 64 megapixels, e.g. 8192x8192.
constexpr int64_t kMaxImagePixels = int64_t(1) << 26;
/// The largest image file read (bytes), checked before it is read.
constexpr int64_t kMaxImageFileBytes = int64_t(256) << 20;
/// Reads the width and height from a PNG, JPEG, BMP or GIF header without decoding and refuses
/// sizes beyond kMaxImagePixels (or a side beyond 2^20, as OpenCV); other formats pass to the
/// decoder. `name` (the file) starts the message.
Status check_image_header(const unsigned char* bytes, size_t size, const std::string& name);
/// A file's bytes, its size checked against kMaxImageFileBytes first.
Result<std::vector<unsigned char>> read_image_bytes(const std::string& path);
/// Decodes an image held in memory (the header checked first) to an 8-bit cv::Mat, grey or BGR
/// (`channels` 1 or 3). Every failure is a message starting with `name`.
#ifdef DLAB_IMAGING_OPENCV
Result<cv::Mat> decode_image(const std::vector<unsigned char>& bytes, const std::string& name, int channels);
#endif
/// Reads an image file as [C,H,W] float in [0,1]; `channels` 1 (grey) or 3 (RGB).
Result<at::Tensor> read_image(const std::string& path, int channels);

}  // namespace dlab::imaging

namespace dlab::imaging {

/// Writes frames ([C,H,W] in [0,1], all the same size) as an MP4 video (mp4v), upscaled by
/// `scale` with nearest neighbour, through a temporary file renamed into place; `path` must end
/// in .mp4 (the container is fixed). The Qt backend has no video encoder: it refuses, naming the
/// file.
Status write_video(const std::string& path, const std::vector<at::Tensor>& frames, double fps,
                   int scale = 8);

}  // namespace dlab::imaging
