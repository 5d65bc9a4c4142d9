#pragma once
// Building blocks shared by the UNet and the noise-aware classifier (internal to core).

#include <cmath>

#include <torch/torch.h>

namespace dlab::blocks {

namespace nn = torch::nn;

// Residual block (Ho et al. 2020 / ADM): GN-SiLU-Conv, + time embedding, GN-SiLU-Dropout-Conv.
struct ResBlockImpl : nn::Module {
    ResBlockImpl(int64_t in, int64_t out, int64_t temb, int64_t groups, double dropout)
        : norm1(register_module("norm1", nn::GroupNorm(groups, in))),
          conv1(register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)))),
          temb_proj(register_module("temb_proj", nn::Linear(temb, out))),
          norm2(register_module("norm2", nn::GroupNorm(groups, out))),
          drop(register_module("dropout", nn::Dropout(dropout))),
          conv2(register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1)))) {
        if (in != out) skip = register_module("skip", nn::Conv2d(nn::Conv2dOptions(in, out, 1)));
        // Start each block as (nearly) the identity: zero the last convolution.
        nn::init::zeros_(conv2->weight);
        nn::init::zeros_(conv2->bias);
    }
    at::Tensor forward(const at::Tensor& x, const at::Tensor& temb) {
        at::Tensor h = conv1(at::silu(norm1(x)));
        h = h + temb_proj(at::silu(temb)).unsqueeze(-1).unsqueeze(-1);
        h = conv2(drop(at::silu(norm2(h))));
        return (skip ? skip(x) : x) + h;
    }
    nn::GroupNorm norm1;
    nn::Conv2d conv1;
    nn::Linear temb_proj;
    nn::GroupNorm norm2;
    nn::Dropout drop;
    nn::Conv2d conv2;
    nn::Conv2d skip{nullptr};
};
TORCH_MODULE(ResBlock);

// Multi-head self-attention over the H*W positions, with a residual connection.
struct AttentionImpl : nn::Module {
    AttentionImpl(int64_t ch, int64_t heads, int64_t groups)
        : heads(heads),
          norm(register_module("norm", nn::GroupNorm(groups, ch))),
          qkv(register_module("qkv", nn::Conv2d(nn::Conv2dOptions(ch, 3 * ch, 1)))),
          proj(register_module("proj", nn::Conv2d(nn::Conv2dOptions(ch, ch, 1)))) {
        nn::init::zeros_(proj->weight);
        nn::init::zeros_(proj->bias);
    }
    at::Tensor forward(const at::Tensor& x) {
        const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
        const int64_t d = C / heads;
        const at::Tensor q_k_v = qkv(norm(x)).reshape({B, 3, heads, d, H * W});
        const at::Tensor q = q_k_v.select(1, 0), k = q_k_v.select(1, 1), v = q_k_v.select(1, 2);
        // softmax(q^T k / sqrt(d)) over keys; [B, heads, HW, HW]
        const at::Tensor w = at::softmax(at::matmul(q.transpose(2, 3), k) / std::sqrt(double(d)), -1);
        const at::Tensor out = at::matmul(v, w.transpose(2, 3)).reshape({B, C, H, W});
        return x + proj(out);
    }
    int64_t heads;
    nn::GroupNorm norm;
    nn::Conv2d qkv, proj;
};
TORCH_MODULE(Attention);

}  // namespace dlab::blocks
