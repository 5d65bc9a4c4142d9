#pragma once
// What the trainers of core share (the diffusion trainer and the GAN trainer): AdamW whose state is
// plain tensors a checkpoint saves and restores exactly, gradient clipping, the finiteness check
// that guards every checkpoint, and the run folder's loss log kept consistent on resume.

#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/runtime/result.h"

namespace dlab {

// AdamW (Loshchilov & Hutter 2019) written out so that its state is plain named tensors that the
// checkpoint saves and restores exactly. The multi-tensor (_foreach) kernels update all parameters
// in a few launches, which matters on the GPU where a small UNet is launch-bound.
struct AdamW {
    std::vector<at::Tensor> params, m, v;
    double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    void init(const std::vector<at::Tensor>& ps) {
        params = ps;
        for (const auto& p : ps) {
            m.push_back(at::zeros_like(p));
            v.push_back(at::zeros_like(p));
        }
    }
    /// One update with bias correction; t counts from 1; wd is decoupled weight decay.
    void step(int64_t t, double lr, double wd);
};

/// Scales all gradients so that their global L2 norm is at most max_norm.
void clip_gradients(const std::vector<at::Tensor>& params, double max_norm);

/// out_dir/checkpoint.safetensors
std::string checkpoint_path(const std::string& dir);
/// A whole number >= 0 written in decimal, or nothing.
std::optional<int64_t> parse_count(const std::string& text);
/// Keeps a loss log consistent with a resumed checkpoint: rows past `step` are dropped (and rows
/// that are no log rows at all, which only a damaged file has).
Status truncate_log(const std::string& path, int64_t step);
/// Whether every tensor is finite (one device sync per tensor; called at checkpoint time only).
bool all_finite(const std::vector<at::Tensor>& tensors);

}  // namespace dlab
