#include "core/video/moving_fashion.h"

#include <cmath>
#include <stdexcept>

#include "core/sampling/sampler.h"

namespace dlab {

const std::array<const char*, kMotionDirections>& motion_direction_names() {
    static const std::array<const char*, kMotionDirections> names = {"east", "north-east", "north", "north-west",
                                                                     "west", "south-west", "south", "south-east"};
    return names;
}

std::array<int, 2> motion_step(int d) {
    static const std::array<std::array<int, 2>, kMotionDirections> steps = {
        {{0, 1}, {-1, 1}, {-1, 0}, {-1, -1}, {0, -1}, {1, -1}, {1, 0}, {1, 1}}};
    return steps[static_cast<size_t>(((d % kMotionDirections) + kMotionDirections) % kMotionDirections)];
}

Status MovingConfig::validate() const {
    auto range = [](const char* f, int64_t v, int64_t lo, int64_t hi) {
        return v >= lo && v <= hi ? Status::success()
                                  : Status::failure("video: " + std::string(f) + " is " + std::to_string(v) + "; allowed " +
                                                    std::to_string(lo) + " to " + std::to_string(hi));
    };
    for (const Status& st : {range("frames", frames, 2, 256), range("canvas", canvas, 8, 512), range("item", item, 4, 512),
                             range("speed", speed, 1, 64)})
        if (!st) return st;
    // The first 4 frames must fit between the borders: room of at least 8 speeds beside the item.
    if (canvas - item < 8 * speed)
        return Status::failure("video: an item of " + std::to_string(item) + " px moving " + std::to_string(speed) +
                               " px per frame needs a canvas of at least " + std::to_string(item + 8 * speed) + " px");
    return Status::success();
}

Result<MovingClips> make_moving_clips(const LabelledData& items, const MovingConfig& c, uint64_t seed, int64_t first,
                                      int64_t count) {
    if (auto st = c.validate(); !st) return Error{st.error()};
    if (!items.x.defined() || items.x.dim() != 4 || items.x.size(0) < 1 || items.x.size(1) != 1)
        return Error{"video: the items must be grey images [N, 1, H, W]"};
    if (first < 0 || count < 1 || count > 100000) return Error{"video: clips must be counted from 0, at most 100,000 at once"};
    const int64_t T = c.frames, S = c.canvas, K = c.item, room = S - K, N = items.x.size(0);
    MovingClips out;
    out.clips = at::full({count, T, 1, S, S}, -1.0f);
    out.classes = at::empty({count}, at::kLong);
    out.directions = at::empty({count}, at::kLong);
    out.positions = at::empty({count, T, 2}, at::kLong);
    auto pos = out.positions.accessor<int64_t, 3>();
    for (int64_t i = 0; i < count; ++i) {
        at::Generator gen = make_generator(seed * 1000003ULL + static_cast<uint64_t>(first + i) * 7919ULL + 17);
        const auto i64 = at::TensorOptions().dtype(at::kLong);
        const int64_t k = at::randint(N, {1}, gen, i64).item<int64_t>();
        const int d = static_cast<int>(at::randint(kMotionDirections, {1}, gen, i64).item<int64_t>());
        // Start 4 speeds from either border: the first 4 frames never bounce.
        const int64_t lo = 4 * c.speed, span = room - 8 * c.speed + 1;
        int64_t r = lo + at::randint(span, {1}, gen, i64).item<int64_t>();
        int64_t col = lo + at::randint(span, {1}, gen, i64).item<int64_t>();
        const auto step = motion_step(d);
        int64_t vr = step[0] * c.speed, vc = step[1] * c.speed;
        const at::Tensor item = at::upsample_bilinear2d(items.x.narrow(0, k, 1).to(at::kFloat), {K, K}, false).clamp(-1, 1)[0];
        out.classes[i] = items.labels[k].item<int64_t>();
        out.directions[i] = d;
        for (int64_t t = 0; t < T; ++t) {
            pos[i][t][0] = r;
            pos[i][t][1] = col;
            out.clips[i][t].narrow(1, r, K).narrow(2, col, K).copy_(item);
            // Constant velocity, reflected at the borders.
            auto advance = [room](int64_t& p, int64_t& v) {
                p += v;
                if (p < 0) p = -p, v = -v;
                if (p > room) p = 2 * room - p, v = -v;
            };
            advance(r, vr);
            advance(col, vc);
        }
    }
    return out;
}

std::function<std::pair<at::Tensor, at::Tensor>(uint64_t, int64_t)> moving_clip_source(LabelledData items,
                                                                                       MovingConfig config, uint64_t seed) {
    return [items = std::move(items), config, seed](uint64_t key, int64_t count) {
        auto c = make_moving_clips(items, config, seed * 0x9e3779b97f4a7c15ULL + key, 0, count);
        if (!c) throw std::invalid_argument(c.error());
        const at::Tensor frames = c->clips.reshape({count * config.frames, 1, config.canvas, config.canvas});
        return std::make_pair(frames, c->classes * kMotionDirections + c->directions);
    };
}

at::Tensor frame_centroids(const at::Tensor& clips) {
    TORCH_CHECK(clips.dim() == 5, "frame_centroids: clips must be [B, T, C, S, S]");
    const at::Tensor w = ((clips.to(at::kFloat).mean(2) + 1) * 0.5).clamp_min(0);  // [B, T, H, W]
    const int64_t H = w.size(2), W = w.size(3);
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(w.device());
    const at::Tensor rows = at::arange(H, f32).view({1, 1, H, 1}), cols = at::arange(W, f32).view({1, 1, 1, W});
    const at::Tensor mass = w.sum({2, 3});
    const at::Tensor empty = mass < 1e-6;
    const at::Tensor safe = mass.clamp_min(1e-6);
    const at::Tensor cr = at::where(empty, at::full_like(mass, (H - 1) / 2.0), (w * rows).sum({2, 3}) / safe);
    const at::Tensor cc = at::where(empty, at::full_like(mass, (W - 1) / 2.0), (w * cols).sum({2, 3}) / safe);
    return at::stack({cr, cc}, 2);
}

MotionEstimate estimate_motion(const at::Tensor& clips, int64_t span) {
    const at::Tensor c = frame_centroids(clips);
    const int64_t s = std::max<int64_t>(1, std::min<int64_t>(span, c.size(1) - 1));
    const at::Tensor delta = c.select(1, s) - c.select(1, 0);  // [B, 2] (row, column)
    // Angle counter-clockwise from east (rows grow downwards), in eighths of a turn.
    const at::Tensor angle = at::atan2(-delta.select(1, 0), delta.select(1, 1));
    const at::Tensor eighth = at::round(angle / (M_PI / 4)).to(at::kLong).remainder(kMotionDirections);
    return {eighth, delta.norm(2, 1)};
}

}  // namespace dlab
