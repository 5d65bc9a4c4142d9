#pragma once
// core/video/ -- video diffusion's data: Fashion-MNIST items moving on a larger canvas, made on the
// fly from a seed (nothing large is stored), with the class and the motion direction as labels,
// and the centroid tracker that measures motion on any clip (real or generated).
//
// A clip: T frames of S x S, black (-1) background, one item (a Fashion-MNIST image scaled to
// `item` pixels) moving at `speed` pixels per frame in one of 8 directions and bouncing off the
// borders. Clip i of a seed is always the same clip, whatever batch it is drawn in.

#include <array>
#include <cstdint>
#include <functional>
#include <utility>
#include <string>

#include <ATen/ATen.h>

#include "core/data/datasets.h"
#include "core/runtime/result.h"

namespace dlab {

/// The 8 directions of motion, counter-clockwise from east: E, NE, N, NW, W, SW, S, SE.
constexpr int kMotionDirections = 8;
const std::array<const char*, kMotionDirections>& motion_direction_names();
/// The (row, column) step of direction d: E = (0, +1), N = (-1, 0), ...
std::array<int, 2> motion_step(int direction);

struct MovingConfig {
    int64_t frames = 16;  ///< T
    int64_t canvas = 48;  ///< S
    int64_t item = 20;    ///< side of the scaled item
    int64_t speed = 2;    ///< pixels per frame along each moving axis
    /// Checks ranges and that the item fits with room to move; the message names the field.
    Status validate() const;
};

struct MovingClips {
    at::Tensor clips;       ///< [B, T, 1, S, S] float in [-1, 1]
    at::Tensor classes;     ///< [B] int64, the item's Fashion-MNIST class
    at::Tensor directions;  ///< [B] int64 in [0, 8), the direction of the first frames' motion
    at::Tensor positions;   ///< [B, T, 2] int64, the item's top-left (row, column) in each frame
};

/// Clips first .. first + count - 1 of `seed`, items drawn from `items` ([N, 1, 28, 28] in [-1, 1]).
/// Each clip starts far enough from the borders that its first 4 frames move without bouncing.
Result<MovingClips> make_moving_clips(const LabelledData& items, const MovingConfig& config, uint64_t seed,
                                      int64_t first, int64_t count);

/// Intensity-weighted centroids (row, column) of every frame: clips [B, T, 1, S, S] -> [B, T, 2]
/// (weights (x + 1) / 2; an empty frame gives the canvas centre).
at::Tensor frame_centroids(const at::Tensor& clips);

/// The direction (0..7) nearest to each clip's centroid motion from frame 0 to frame `span`
/// (the frames before any bounce), and the length of that motion in pixels ([B] each).
struct MotionEstimate {
    at::Tensor directions, distance;
};
MotionEstimate estimate_motion(const at::Tensor& clips, int64_t span = 4);

/// Video models are conditioned on class and direction together: label = class * 8 + direction
/// (80 labels for Fashion-MNIST; 80 is the null label of classifier-free guidance).
constexpr int64_t kVideoClasses = 10;
constexpr int64_t kVideoLabels = kVideoClasses * kMotionDirections;
inline int64_t video_label(int64_t cls, int64_t direction) { return cls * kMotionDirections + direction; }

/// A clip source for the trainer (trainer.h VideoTraining): `count` clips of the step `key`, as
/// frames [count * T, 1, S, S] and labels [count] (video_label). Clips differ for every key.
std::function<std::pair<at::Tensor, at::Tensor>(uint64_t, int64_t)> moving_clip_source(LabelledData items,
                                                                                       MovingConfig config, uint64_t seed);

}  // namespace dlab
