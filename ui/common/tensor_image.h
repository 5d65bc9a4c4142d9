#pragma once
// Tensor -> QImage conversions for the views (safe on any thread: QImage is a value type).

#include <QImage>
#include <QVector>

#include <ATen/core/Tensor.h>

namespace dlab::ui {

/// [C,H,W] (C = 1 or 3) with values in [lo, hi] -> an 8-bit image (grey or RGB).
QImage tensorToImage(const at::Tensor& image, double lo = -1.0, double hi = 1.0);

/// [C,H,W] signed values -> a diverging blue-white-red heat map (channel mean), symmetric around 0
/// with the range set by the largest magnitude (or `range` when > 0).
QImage heatMap(const at::Tensor& values, double range = 0.0);

/// A latent [L,h,w] as its L channels side by side (a square-ish grid, 1-pixel grey gaps), each
/// in grey over [-range, range].
QImage latentImage(const at::Tensor& latent, double range = 3.0);

/// 2-D points [N,2] as a scatter on a `size` x `size` square showing [-4, 4] on both axes, with
/// the axes drawn; non-finite points are skipped.
QImage scatterImage(const at::Tensor& points, int size = 256, int alpha = 100);

/// A tensor's values as doubles (for plots), in row-major order.
QVector<double> toDoubles(const at::Tensor& values);

}  // namespace dlab::ui
