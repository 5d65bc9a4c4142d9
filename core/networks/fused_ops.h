#pragma once
// The project's own fused CUDA kernels for inference (issue 17; internal to core, except the
// inference precision that the CLI and GUI choose). GroupNorm with
// an optional per-(sample, channel) bias added before it (the residual block's time embedding)
// and an optional SiLU after it, in one kernel instead of LibTorch's four or five.
//
// Compiled only when CMake finds a CUDA compiler beside a CUDA LibTorch (DLAB_FUSED_CUDA); used
// only under no-grad, on contiguous or channels-last CUDA tensors (float32; float16 and bfloat16
// through kernel 2), unless the environment variable
// DLAB_FUSED_KERNELS is "0" (installer/gpu-fused.sh compares both ways on the GPU machine).
// Everywhere else the callers use the LibTorch ops.

#include <optional>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace dlab {

/// Whether this build holds the fused kernels.
bool fused_kernels_compiled();
/// Whether group_norm_act may take x [N, C, H, W] (with a bias [N, C] of x's type when `bias` is
/// defined): compiled, switched on, autograd off, CUDA, float32 (or float16 / bfloat16 where a
/// group, C / groups * H * W values, fits kernel 2's shared memory), contiguous or channels-last,
/// C divisible by `groups`.
bool fused_group_norm_usable(const at::Tensor& x, const at::Tensor& bias, int64_t groups);
/// Whether fused_group_norm_act_train may take x [N, C, H, W] (training: autograd on): the kernels
/// compiled and switched on, the environment variable DLAB_GN_TRAIN not "0", CUDA, float32, plain
/// contiguous or channels-last (then C / groups <= 1024), C divisible by `groups`, bias (when
/// defined) [N, C].
bool fused_group_norm_train_usable(const at::Tensor& x, const at::Tensor& bias, int64_t groups);
/// act(GroupNorm(x + bias[:, :, None, None])) as fused_group_norm_act, differentiable in x, bias,
/// gamma and beta through the project's backward kernel (one pass for the sums, one for dx).
at::Tensor fused_group_norm_act_train(const at::Tensor& x, const at::Tensor& bias, int64_t groups,
                                      const at::Tensor& gamma, const at::Tensor& beta, double eps, bool silu);
/// Whether CUDA inference may run the UNet channels-last (NHWC: cuDNN's tensor-core convolutions
/// take it without transposes; the fused GroupNorm reads it in place): the fused kernels compiled
/// and switched on, and the environment variable DLAB_CHANNELS_LAST not "0".
bool channels_last_enabled();
/// Whether training on one GPU (under the trainer's CUDA graph) runs the UNet channels-last too:
/// channels_last_enabled() and the environment variable DLAB_TRAIN_CHANNELS_LAST not "0".
bool train_channels_last_enabled();
/// The precision of CUDA inference, used by models loaded on a CUDA device afterwards (model_io:
/// load_model; network.h: to_half): float32 unless set_inference_precision() chose another (the
/// CLI's and GUI's --precision) or, before any such call, the environment sets DLAB_HALF to "fp16"
/// or "bf16". Measured on an H200 (docs/eval/half-h200.log): fp16 keeps the quality model's FID
/// (3.818 against 3.816) and runs a batch-256 guided pass 1.5x (default model) to 1.9x (quality
/// model) faster. CPU inference stays float32.
at::ScalarType half_inference_dtype();
/// Chooses the precision of CUDA inference (at::kFloat, at::kHalf or at::kBFloat16; anything else
/// throws std::invalid_argument); thread-safe, applies to models loaded after the call.
void set_inference_precision(at::ScalarType t);
/// "fp32" / "float32", "fp16" / "float16", "bf16" / "bfloat16"; nullopt for anything else.
std::optional<at::ScalarType> parse_precision(const std::string& name);
/// "fp32", "fp16" or "bf16" (another type: its ATen name).
std::string precision_name(at::ScalarType t);
/// The CLI's and GUI's --precision NAME for a run on `device`: sets it (set_inference_precision)
/// and returns nullopt, or returns what is wrong (an unknown name; a half type off CUDA) and
/// changes nothing.
std::optional<std::string> choose_inference_precision(const std::string& name, const c10::Device& device);
/// Whether attention may run through LibTorch's scaled_dot_product_attention (LibTorch 2.x, CUDA,
/// and DLAB_FUSED_KERNELS not "0"); else the explicit softmax(q^T k / sqrt(d)) of the blocks.
bool fused_attention_usable(const at::Tensor& x);
/// softmax(q k^T / sqrt(d)) v for q, k, v [B, heads, L, d] (throws where not usable).
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
/// Which GroupNorm kernel runs: 2 (the default), one read into shared memory with vector loads
/// where a group fits in 48 KB (else 1), or 1, three passes over global memory, when the
/// environment sets DLAB_GN_KERNEL=1.
int fused_group_norm_kernel();
/// act(GroupNorm(x + bias[:, :, None, None])) with the norm's affine gamma, beta and eps; act is
/// SiLU when `silu`, else the identity. A new tensor in x's layout; x is not modified. `kernel`
/// 1 or 2 picks one (bench --check-fused checks both); anything else lets it choose: for a
/// channels-last x, a streaming pass from x's per-channel sums (known, fused_sums_known, or from a
/// sums pass of their own; DLAB_GN_SUMS_PASS=0 turns that pass off), else fused_group_norm_kernel().
at::Tensor fused_group_norm_act(const at::Tensor& x, const at::Tensor& bias, int64_t groups,
                                const at::Tensor& gamma, const at::Tensor& beta, double eps,
                                bool silu, int kernel = 0);

/// Whether x's per-channel sums are known from the residual kernel that wrote it (fused_residual_add_
/// on a channels-last x leaves them, unless the environment variable DLAB_GN_STATS is "0") and x has
/// not changed since: then fused_group_norm_act (kernel left to choose) and
/// fused_concat_group_norm_act (both parts known) normalise it in one streaming pass.
bool fused_sums_known(const at::Tensor& x);

/// Whether the residual kernels below may run on x [N, C, H, W] (inference: the fused kernels
/// compiled and switched on, the environment variable DLAB_FUSED_RESIDUAL not "0", autograd off,
/// CUDA, float32 / float16 / bfloat16, contiguous or channels-last). Where they may not, the
/// callers keep LibTorch's ops (a convolution with its bias, then an add).
bool fused_residual_usable(const at::Tensor& x);
/// h += r + r2 + bias[None, :, None, None] in one pass (one kernel where LibTorch runs a
/// convolution's bias pass and an add or two): h, r and r2 of one shape, type and layout, bias [C]
/// of their type; r, r2 and bias each may be undefined. Returns h. Throws std::invalid_argument on
/// mismatched arguments (and where fused_residual_usable(h) is false).
at::Tensor fused_residual_add_(at::Tensor h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2 = {});
/// Whether fused_residual_add_ takes these arguments: fused_residual_usable(h); r and r2 (where
/// defined) of h's shape, strides, type and device; bias (where defined) [C] of h's type and device.
bool fused_residual_fits(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2 = {});
/// Whether fused_residual_add_train may take h (training, channels-last: trainer.cpp): the fused
/// kernels compiled and switched on, DLAB_FUSED_RESIDUAL not "0", autograd on, CUDA, float32,
/// laid out channels-last (and not also plain).
bool fused_residual_train_usable(const at::Tensor& h);
/// Whether fused_residual_add_train takes these arguments: fused_residual_train_usable(h); r and r2
/// (where defined) of h's shape, strides, type and device; bias (where defined) [C] float32 on h's device.
bool fused_residual_train_fits(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2 = {});
/// h + r + r2 + bias[None, :, None, None] as a new tensor, differentiable (training): forward by the
/// residual kernel in one pass (LibTorch: the convolution's bias pass, then an add or two);
/// backward passes the gradient to h, r and r2 and sums it over N, H and W for the bias. Throws
/// std::invalid_argument where fused_residual_train_fits is false.
at::Tensor fused_residual_add_train(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2 = {});
/// The sums of x over all its dimensions but the channels' (x [N, C, H, W] channels-last, or [M, C]
/// contiguous): [C], by the column-sum kernel that the training backward passes use for bias,
/// gamma and beta gradients (in an order of additions fixed by the shape: the same sums every
/// run). Throws std::invalid_argument where it cannot take x (float32 CUDA, C <= 1024).
at::Tensor fused_channel_sums(const at::Tensor& x);
/// Nearest-neighbour upsampling by 2 of a channels-last x where fused_residual_usable(x), in one
/// vectorised kernel (LibTorch's reads and writes a value at a time); channels-last out.
at::Tensor fused_upsample2(const at::Tensor& x);
/// A 3x3 convolution's weight w [Cout, Cin, 3, 3] as the weights of the four output phases of
/// "upsample by 2 (nearest), then convolve with w (padding 1)" on the small map: [4 Cout, Cin, 2, 2]
/// channels-last in w's type, phase (u, v) (output row 2i + u, column 2j + v) in rows
/// [(2u + v) Cout, (2u + v + 1) Cout); a 2x2 convolution of the small map with padding 1 gives
/// phase (u, v) of output (2i + u, 2j + v) at (i + u, j + v). Computed in float; plain LibTorch.
at::Tensor subpixel_weight(const at::Tensor& w);
/// Whether fused_upsample_conv may take the small map x, the 3x3 weight and the bias: fused_residual_usable(x),
/// channels-last, weight [Cout, Cin, 3, 3] and bias [Cout] of x's type and device, Cout that the residual
/// kernel's sums take, and the environment variable DLAB_SUBPIXEL not "0".
bool fused_upsample_conv_usable(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
/// conv2d(upsample_nearest2d(x, 2), weight, bias, padding 1) from w4 = subpixel_weight(weight): a 2x2
/// convolution of x (a quarter of the multiply-adds at the large size, 4/9 of them all told), then
/// one kernel that interleaves the phases, adds the bias and leaves the output's per-channel sums
/// for the GroupNorm that reads it (fused_sums_known). Channels-last out.
at::Tensor fused_upsample_conv(const at::Tensor& x, const at::Tensor& w4, const at::Tensor& bias);
/// Whether fused_first_conv may take x, weight and bias (the UNet's first convolution): fused_residual_usable(x),
/// x [N, 1, H, W] contiguous, weight [C, 1, 3, 3] contiguous and bias [C] of x's type and device, C * 10 values
/// within 48 KB, and the environment variable DLAB_FIRST_CONV not "0".
bool fused_first_conv_usable(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
/// conv2d(x, weight, bias, stride 1, padding 1) of a one-channel x, channels-last, in one kernel (cuDNN: a plain-layout
/// convolution, a conversion to channels-last and a bias pass). Throws std::invalid_argument where not usable.
at::Tensor fused_first_conv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
/// Whether fused_small_attention may take qkv (the attention block's 1x1 convolution output, [B,
/// 3 * heads * D, H, W], memory [B, H * W, 3, heads, D]): fused_residual_usable(qkv), channels-last,
/// D 8, 16, 32 or 64, the head's keys and values (2 * H * W * D floats) within 48 KB, 16-byte
/// aligned, and the environment variable DLAB_SMALL_ATTENTION not "0".
bool fused_small_attention_usable(const at::Tensor& qkv, int64_t heads);
/// softmax(q k^T / sqrt(D)) v of each sample and head, as [B, heads * D, H, W] channels-last (what
/// the output projection takes), in one kernel from the qkv layout as it is (LibTorch: the fused
/// attention kernel, then a copy back to channels-last). Throws std::invalid_argument where
/// fused_small_attention_usable is false.
at::Tensor fused_small_attention(const at::Tensor& qkv, int64_t heads);
/// Whether fused_concat_group_norm_act may take x1 [N, C1, H, W] and x2 [N, C2, H, W] (the UNet
/// decoder's input and skip connection): fused_residual_usable(x1), both channels-last, of one type,
/// N, H and W, C1 + C2 divisible by `groups`, a group fitting kernel 2's shared memory, and the
/// environment variable DLAB_FUSED_CONCAT not "0".
bool fused_concat_usable(const at::Tensor& x1, const at::Tensor& x2, int64_t groups);
/// act(GroupNorm(cat({x1, x2}, 1))) with the norm's gamma, beta and eps, channels-last, without the
/// concatenation being written: the kernel reads each channel from x1 or x2. Each part's sums
/// known (fused_sums_known) or taken by a pass of their own, one streaming pass; else (or with
/// `kernel` 2) kernel 2.
at::Tensor fused_concat_group_norm_act(const at::Tensor& x1, const at::Tensor& x2, int64_t groups,
                                       const at::Tensor& gamma, const at::Tensor& beta, double eps, bool silu,
                                       int kernel = 0);

}  // namespace dlab
