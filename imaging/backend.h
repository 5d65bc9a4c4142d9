#pragma once
// What an imaging backend provides (internal to dlab_imaging): OpenCV (opencv_backend.cpp, the
// normal build) or, where OpenCV is not installed (a GPU server that builds the GUI), Qt's image
// classes (qt_backend.cpp; no video). Everything else of image_io and image_folder -- header and
// size checks, grids, PNG text chunks, atomic writes, folder walking -- is shared.

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/runtime/result.h"

namespace dlab::imaging::backend {

/// Decodes checked image bytes to an 8-bit [H, W, C] tensor, C = `channels` (1 grey, 3 RGB).
Result<at::Tensor> decode(const std::vector<unsigned char>& bytes, const std::string& name, int channels);
/// An 8-bit [H, W, C] image cropped to its centre square and resized to `size` x `size` (area
/// interpolation when shrinking, linear when growing).
at::Tensor fit_square(const at::Tensor& hwc, int size);
/// An 8-bit [H, W, C] image (C = 1 or 3, RGB) as PNG bytes.
Result<std::string> encode_png(const at::Tensor& hwc, const std::string& name);
/// Frames [C, H, W] in [0, 1] as an MP4 at `tmp`, upscaled `scale`x by nearest neighbour.
Status write_video(const std::string& tmp, const std::string& name, const std::vector<at::Tensor>& frames,
                   double fps, int scale);

}  // namespace dlab::imaging::backend

namespace dlab::imaging {

// Shared by the backends (image_io.cpp).
/// The checks before any decoder sees the bytes: 1 or 3 channels, not empty, a known format by
/// its first bytes, and the header's size within limits. Failures start with `name`.
Status check_decodable(const std::vector<unsigned char>& bytes, const std::string& name, int channels);
/// check_decodable, then the backend's decoder, then the decoded size against kMaxImagePixels:
/// an 8-bit [H, W, C] tensor.
Result<at::Tensor> decode_to_tensor(const std::vector<unsigned char>& bytes, const std::string& name, int channels);
/// PNG bytes with tEXt chunks (key, value) inserted after IHDR.
std::string with_text_chunks(std::string png, const std::vector<std::pair<std::string, std::string>>& text);
/// A [C, H, W] or [H, W] float image in [0, 1] as an 8-bit [H, W, C] tensor (values clamped).
at::Tensor to_hwc8(const at::Tensor& image);

}  // namespace dlab::imaging
