#pragma once
// Building blocks shared by the UNet and the noise-aware classifier (internal to core).

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "core/networks/fused_ops.h"

namespace dlab::blocks {

namespace nn = torch::nn;

// SiLU of a tensor that nothing else holds (a fresh GroupNorm output): in place when autograd is
// off (sampling), which saves an allocation and a pass over memory; out of place when training
// (SiLU's backward needs its input).
inline at::Tensor silu_fresh(at::Tensor x) { return at::GradMode::is_enabled() ? at::silu(x) : at::silu_(x); }
// h + r, written into h (a fresh convolution output) when that keeps the result's dtype; under
// mixed precision a wider r promotes the sum out of place, as h + r would.
inline at::Tensor add_into(at::Tensor h, const at::Tensor& r) {
    return at::result_type(h, r) == h.scalar_type() && h.sizes() == at::infer_size(h.sizes(), r.sizes()) ? h.add_(r) : h + r;
}

// Whether act(norm(x + bias)) can take the fused CUDA kernels (fused_ops.h; inference, and training
// unless DLAB_GN_TRAIN=0).
inline bool fusable(nn::GroupNorm& norm, const at::Tensor& x, const at::Tensor& bias = {}) {
    return norm->weight.defined() && norm->weight.scalar_type() == x.scalar_type() &&
           (fused_group_norm_usable(x, bias, norm->options.num_groups()) ||
            fused_group_norm_train_usable(x, bias, norm->options.num_groups()));
}
// act(norm(x + bias[:, :, None, None])) by the fused kernel; call only where fusable().
inline at::Tensor fused_norm(nn::GroupNorm& norm, const at::Tensor& x, bool silu, const at::Tensor& bias = {}) {
    const int64_t groups = norm->options.num_groups();
    return at::GradMode::is_enabled()
               ? fused_group_norm_act_train(x, bias, groups, norm->weight, norm->bias, norm->options.eps(), silu)
               : fused_group_norm_act(x, bias, groups, norm->weight, norm->bias, norm->options.eps(), silu);
}
// SiLU(norm(x)), fused where it can be; x is not modified.
inline at::Tensor norm_silu(nn::GroupNorm& norm, const at::Tensor& x) {
    return fusable(norm, x) ? fused_norm(norm, x, true) : silu_fresh(norm(x));
}

// A residual block's dropout. On the CPU the mask comes from at::rand_like, about twice as fast as
// at::dropout's bernoulli_ (the same CPU generator; [64, 64, 14, 14] on 2 cores: 4.9 against 10.5 ms,
// ~6 % of a CPU training step); CUDA keeps LibTorch's fused dropout kernel (and the generator that a
// CUDA graph registers). Same law: each value kept with probability 1 - p and scaled by 1 / (1 - p).
inline at::Tensor block_dropout(nn::Dropout& drop, const at::Tensor& h) {
    const double p = drop->options.p();
    if (!drop->is_training() || p <= 0 || h.is_cuda()) return drop(h);
    return h * ((at::rand_like(h) >= p).to(h.scalar_type()) * (1.0 / (1.0 - p)));
}

// A tensor made from parameters (two biases added, a weight's slice made contiguous), kept from one
// inference call to the next while those parameters are the same memory at the same version (an
// optimizer step, EMA or a load into them moves the version; network.h: to_half and to_channels_last
// move the memory). Each such tensor was a small kernel of its own in every forward pass (~30 in a
// guided pass of the default UNet, ~0.1 ms of a graphed batch-256 pass on an H200). With autograd on
// (training) it is made anew each call, inside the graph. GraphedModel recaptures its CUDA graphs
// when a parameter's version moves, so that a replay never holds a stale one. DLAB_KEEP_DERIVED=0:
// made anew each call (for comparisons).
struct Derived {
    template <typename Make>
    at::Tensor get(std::initializer_list<at::Tensor> from, Make&& make) {
        return get(from.begin(), from.end(), std::forward<Make>(make));
    }
    template <typename Make>
    at::Tensor get(const std::vector<at::Tensor>& from, Make&& make) {
        return get(from.data(), from.data() + from.size(), std::forward<Make>(make));
    }
    template <typename Make>
    at::Tensor get(const at::Tensor* begin, const at::Tensor* end, Make&& make) {
        static const bool keep = !(std::getenv("DLAB_KEEP_DERIVED") && std::string(std::getenv("DLAB_KEEP_DERIVED")) == "0");
        if (at::GradMode::is_enabled() || !keep) return make();
        std::vector<std::pair<const void*, int64_t>> now;
        now.reserve(size_t(end - begin));
        for (const at::Tensor* t = begin; t != end; ++t) now.emplace_back(t->data_ptr(), t->_version());
        if (!value.defined() || now != key) {
            value = make();
            key = std::move(now);
        }
        return value;
    }
    std::vector<std::pair<const void*, int64_t>> key;
    at::Tensor value;
};

// Whether the residual kernels may take x (fused_ops.h): CUDA inference, or channels-last training.
inline bool residual_kernels(const at::Tensor& x) { return fused_residual_usable(x) || fused_residual_train_usable(x); }
// h + r + r2 + bias[None, :, None, None] (r2 optional), in one kernel where the layouts and types
// agree (fused_ops.h: CUDA inference, in place; channels-last training, differentiable), else by
// LibTorch's ops (a mixed-precision autocast's wider residual, for one). h is a fresh convolution
// output; the sum may be written into it.
inline at::Tensor add_residual(at::Tensor h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2 = {}) {
    if (fused_residual_fits(h, r, bias, r2)) return fused_residual_add_(h, r, bias, r2);
    if (fused_residual_train_fits(h, r, bias, r2)) return fused_residual_add_train(h, r, bias, r2);
    if (bias.defined()) h = add_into(h, bias.view({1, -1, 1, 1}));
    if (r.defined()) h = add_into(h, r);
    return r2.defined() ? add_into(h, r2) : h;
}
// conv(x) (+ residual): on CUDA inference and channels-last training the convolution runs without
// its bias and one kernel adds the bias (and the residual), where LibTorch adds the bias in a
// broadcasting pass of its own (and the residual in another); elsewhere the module itself, then
// + residual.
inline at::Tensor conv_bias(nn::Conv2d& conv, const at::Tensor& x, int64_t stride, int64_t padding,
                            const at::Tensor& residual = {}) {
    if (!residual_kernels(x) || conv->weight.scalar_type() != x.scalar_type() || !conv->bias.defined())
        return residual.defined() ? residual + conv(x) : conv(x);
    return add_residual(at::conv2d(x, conv->weight, {}, stride, padding), residual, conv->bias);
}

// Nearest-neighbour upsampling by 2 (the UNet decoder's): one vectorised kernel on CUDA inference in
// channels-last (fused_ops.h), else LibTorch's.
inline at::Tensor upsample2(const at::Tensor& h) {
    if (fused_residual_usable(h) && !h.is_contiguous() && h.is_contiguous(at::MemoryFormat::ChannelsLast))
        return fused_upsample2(h);
    return at::upsample_nearest2d(h, {h.size(2) * 2, h.size(3) * 2});
}

// conv(upsample2(h)) (the decoder's upsampling): on CUDA inference a 2x2 convolution of the small
// map with the four output phases' weights (made once into `phases`) and one kernel that
// interleaves them and adds the bias (fused_ops.h: fused_upsample_conv), else as written.
inline at::Tensor upsample_conv(nn::Conv2d& conv, const at::Tensor& h, Derived& phases) {
    if (fused_upsample_conv_usable(h, conv->weight, conv->bias))
        return fused_upsample_conv(h, phases.get({conv->weight}, [&] { return subpixel_weight(conv->weight); }), conv->bias);
    return conv_bias(conv, upsample2(h), 1, 1);
}

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
    // `e`, where defined, is the block's time-embedding projection (temb_proj(temb) + conv1's bias)
    // made by the caller (the UNet: one matrix product for all its blocks).
    at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& e = {}) {
        // The adds are in place on convolution outputs (a convolution's backward needs its input, not
        // its output), so they are safe when training too.
        at::Tensor h = middle(norm_silu(norm1, x), temb, e);
        // CUDA inference and channels-last training: conv2 without its bias, then out = h + residual
        // + bias in one kernel (LibTorch: a bias pass, then an add).
        const bool fused = residual_kernels(x);
        if (!skip && !fused) return add_into(conv2(block_dropout(drop, h)), x);
        h = at::conv2d(block_dropout(drop, h), conv2->weight, {}, 1, 1);
        if (!skip) return add_residual(h, x, conv2->bias);
        // With a skip convolution, conv2's bias rides on the skip's (one bias pass instead of two).
        if (fused) return add_residual(h, at::conv2d(x, skip->weight, {}), out_bias());
        return add_into(h, at::conv2d(x, skip->weight, out_bias()));
    }
    // temb_proj's bias + conv1's.
    at::Tensor temb_bias() {
        return derived_temb_bias.get({temb_proj->bias, conv1->bias}, [&] { return temb_proj->bias + conv1->bias; });
    }
    // skip's bias + conv2's (the blocks with a skip convolution).
    at::Tensor out_bias() {
        return derived_out_bias.get({skip->bias, conv2->bias}, [&] { return skip->bias + conv2->bias; });
    }
    // forward(cat({x1, x2}, 1), temb), the UNet decoder's step (x1 from below, x2 the skip
    // connection). On CUDA inference in channels-last the concatenation is never written: the first
    // GroupNorm reads x1 and x2 in one kernel, and the 1x1 skip convolution is the sum of its halves'.
    at::Tensor forward_cat(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& temb, const at::Tensor& e = {}) {
        const int64_t groups = norm1->options.num_groups();
        if (!skip || !fused_concat_usable(x1, x2, groups) || norm1->weight.scalar_type() != x1.scalar_type())
            return forward(at::cat({x1, x2}, 1), temb, e);
        const int64_t C1 = x1.size(1), C2 = x2.size(1);
        const at::Tensor a = fused_concat_group_norm_act(x1, x2, groups, norm1->weight, norm1->bias, norm1->options.eps(), true);
        const at::Tensor h = at::conv2d(block_dropout(drop, middle(a, temb, e)), conv2->weight, {}, 1, 1);
        // The 1x1 skip convolution of the concatenation: the sum of its halves' (cuDNN, TF32 like
        // the other convolutions; LibTorch's float32 matrix products run without TF32 and were
        // slower), added with h and the biases in one pass.
        const at::Tensor& w = skip->weight;
        const at::Tensor w1 = derived_w1.get({w}, [&] { return w.narrow(1, 0, C1).contiguous(); });
        const at::Tensor w2 = derived_w2.get({w}, [&] { return w.narrow(1, C1, C2).contiguous(); });
        return add_residual(h, at::conv2d(x1, w1), out_bias(), at::conv2d(x2, w2));
    }
    // SiLU(norm2(conv1(a) + temb_proj(SiLU(temb)))), a = SiLU(norm1(the block's input)).
    // conv1's bias joins the time embedding's per-(sample, channel) bias, which is added before
    // norm2 anyway: on CUDA a convolution's bias is a pass of its own over h (cuDNN does not add it).
    // The two biases enter the linear layer as one (when training, one bias gradient to reduce);
    // SiLU(temb) is the caller's where `temb_activated` (the UNet takes it once for all its blocks).
    at::Tensor middle(const at::Tensor& a, const at::Tensor& temb, const at::Tensor& given = {}) {
        const at::Tensor h = at::conv2d(a, conv1->weight, {}, 1, 1);
        const at::Tensor e = given.defined() ? given
                                             : at::linear(temb_activated ? temb : at::silu(temb), temb_proj->weight, temb_bias());
        return fusable(norm2, h, e) ? fused_norm(norm2, h, true, e) : silu_fresh(norm2(add_into(h, e.unsqueeze(-1).unsqueeze(-1))));
    }
    nn::GroupNorm norm1;
    nn::Conv2d conv1;
    nn::Linear temb_proj;
    nn::GroupNorm norm2;
    nn::Dropout drop;
    nn::Conv2d conv2;
    nn::Conv2d skip{nullptr};
    bool temb_activated = false;  // forward's temb is SiLU(the time embedding) already
    Derived derived_temb_bias, derived_out_bias, derived_w1, derived_w2;  // inference: made once
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
        const at::Tensor qkv_out = conv_bias(qkv, fusable(norm, x) ? fused_norm(norm, x, false) : norm(x), 1, 0);
        // CUDA inference in channels-last over a short sequence: the project's kernel reads q, k and
        // v where the convolution left them and writes channels-last.
        if (fused_small_attention_usable(qkv_out, heads)) return conv_bias(proj, fused_small_attention(qkv_out, heads), 1, 0, x);
        if (fused_attention_usable(x) && !qkv_out.is_contiguous() && qkv_out.is_contiguous(at::MemoryFormat::ChannelsLast)) {
            // Channels-last (network.h, to_channels_last): the memory is [B, HW, 3, heads, d] already,
            // so q, k and v [B, heads, HW, d] are strided views; one copy out, back to channels-last.
            // unbind, not p[0], p[1], p[2]: its backward stacks the three gradients in one kernel,
            // where three selects' each fill a zero tensor of all three and add into it.
            const std::vector<at::Tensor> p =
                qkv_out.permute({0, 2, 3, 1}).view({B, H * W, 3, heads, d}).permute({2, 0, 3, 1, 4}).unbind(0);
            const at::Tensor o = fused_attention(p[0], p[1], p[2]).transpose(1, 2).reshape({B, H, W, C});
            return conv_bias(proj, o.permute({0, 3, 1, 2}), 1, 0, x);
        }
        const at::Tensor q_k_v = qkv_out.reshape({B, 3, heads, d, H * W});
        if (fused_attention_usable(x)) {
            // LibTorch's fused attention on [B, heads, HW, d]: one contiguous copy in, one out.
            const at::Tensor p = q_k_v.permute({1, 0, 2, 4, 3}).contiguous();
            return x + proj(fused_attention(p[0], p[1], p[2]).transpose(2, 3).reshape({B, C, H, W}));
        }
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

// Multi-head cross-attention from the H*W image positions (queries) to the tokens of a text
// context (keys and values), with a residual connection (Rombach et al. 2022; Saharia et al. 2022):
// x + proj(softmax(q k^T / sqrt(d)) v), padding tokens masked out of the softmax. With `record`
// set, the attention weights of the last call (mean over heads, [B, H*W, L]) are kept in `weights`.
struct CrossAttentionImpl : nn::Module {
    CrossAttentionImpl(int64_t ch, int64_t context_dim, int64_t heads, int64_t groups)
        : heads(heads),
          norm(register_module("norm", nn::GroupNorm(groups, ch))),
          q(register_module("q", nn::Conv2d(nn::Conv2dOptions(ch, ch, 1)))),
          k(register_module("k", nn::Linear(context_dim, ch))),
          v(register_module("v", nn::Linear(context_dim, ch))),
          proj(register_module("proj", nn::Conv2d(nn::Conv2dOptions(ch, ch, 1)))) {
        nn::init::zeros_(proj->weight);
        nn::init::zeros_(proj->bias);
    }
    // x [B, C, H, W]; context [B, L, D]; valid [B, L] bool (true: a real token; at least one per row).
    at::Tensor forward(const at::Tensor& x, const at::Tensor& context, const at::Tensor& valid) {
        const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), L = context.size(1);
        const int64_t d = C / heads;
        const at::Tensor qh = q(norm(x)).reshape({B, heads, d, H * W}).transpose(2, 3);  // [B, h, HW, d]
        const at::Tensor kh = k(context).reshape({B, L, heads, d}).permute({0, 2, 3, 1});  // [B, h, d, L]
        const at::Tensor vh = v(context).reshape({B, L, heads, d}).transpose(1, 2);        // [B, h, L, d]
        at::Tensor logits = at::matmul(qh, kh) / std::sqrt(double(d));                      // [B, h, HW, L]
        logits = logits.masked_fill(valid.logical_not().view({B, 1, 1, L}), -std::numeric_limits<float>::infinity());
        const at::Tensor w = at::softmax(logits.to(at::kFloat), -1).to(vh.scalar_type());
        if (record) weights = w.detach().mean(1).to(at::kFloat);
        const at::Tensor out = at::matmul(w, vh).transpose(2, 3).reshape({B, C, H, W});
        return x + proj(out);
    }
    int64_t heads;
    nn::GroupNorm norm;
    nn::Conv2d q;
    nn::Linear k, v;
    nn::Conv2d proj;
    bool record = false;
    at::Tensor weights;
};
TORCH_MODULE(CrossAttention);

// Attention along time at every image position of a clip (Ho et al. 2022, Video Diffusion Models:
// a space-time factorised UNet), for frames laid out clip by clip in the batch ([B*T, C, H, W]).
// The output is x + proj(attention - v): on a single frame the attention is v itself, so the layer
// is the identity and the network is the per-frame model; with more frames each frame takes in
// what the others hold. Frame order enters through a sinusoidal frame embedding on queries and keys.
struct TemporalAttentionImpl : nn::Module {
    TemporalAttentionImpl(int64_t ch, int64_t heads, int64_t groups, int64_t frames)
        : heads(heads), frames(frames),
          norm(register_module("norm", nn::GroupNorm(groups, ch))),
          qkv(register_module("qkv", nn::Linear(ch, 3 * ch))),
          proj(register_module("proj", nn::Linear(nn::LinearOptions(ch, ch).bias(false)))) {  // no bias: proj(0) = 0
        nn::init::zeros_(proj->weight);
        // Sinusoidal frame positions [T, C].
        const at::Tensor pos = at::arange(frames, at::kFloat).unsqueeze(1);
        const at::Tensor freq = at::exp(-std::log(10000.0) * at::arange(0, ch, 2, at::kFloat) / double(ch));
        at::Tensor pe = at::zeros({frames, ch});
        pe.index_put_({at::indexing::Slice(), at::indexing::Slice(0, at::indexing::None, 2)}, at::sin(pos * freq));
        pe.index_put_({at::indexing::Slice(), at::indexing::Slice(1, at::indexing::None, 2)},
                      at::cos(pos * freq).narrow(1, 0, ch / 2));
        frame_pos = register_buffer("frame_pos", pe);
    }
    at::Tensor forward(const at::Tensor& x) {
        const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), T = frames, B = N / T;
        const int64_t d = C / heads;
        // [B*T, C, H, W] -> [B*H*W, T, C]: one sequence of T frames per clip and position.
        const at::Tensor h = norm(x).view({B, T, C, H * W}).permute({0, 3, 1, 2}).reshape({B * H * W, T, C});
        const at::Tensor q_k_v = qkv(h + frame_pos.to(h.dtype()).unsqueeze(0)).view({B * H * W, T, 3, heads, d});
        const at::Tensor q = q_k_v.select(2, 0).transpose(1, 2), k = q_k_v.select(2, 1).transpose(1, 2);
        const at::Tensor v = q_k_v.select(2, 2).transpose(1, 2);                                 // [BHW, h, T, d]
        const at::Tensor w = at::softmax(at::matmul(q, k.transpose(2, 3)) / std::sqrt(double(d)), -1);
        const at::Tensor mixed = (at::matmul(w, v) - v).transpose(1, 2).reshape({B * H * W, T, C});
        const at::Tensor out = proj(mixed).view({B, H * W, T, C}).permute({0, 2, 3, 1}).reshape({N, C, H, W});
        return x + out;
    }
    int64_t heads, frames;
    nn::GroupNorm norm;
    nn::Linear qkv, proj;
    at::Tensor frame_pos;
};
TORCH_MODULE(TemporalAttention);

}  // namespace dlab::blocks
