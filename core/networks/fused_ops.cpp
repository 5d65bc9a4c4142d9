#include "core/networks/fused_ops.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/version.h>

#ifdef DLAB_FUSED_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/custom_function.h>

namespace dlab::cuda_kernels {
int group_norm_act(const void* x, const void* bias, const void* gamma, const void* beta, void* y,
                   int dtype, int N, int C, int HW, int groups, float eps, bool silu, bool nhwc,
                   int kernel, float* stats, void* stream, int64_t ldb);
int group_norm_act_backward(const float* x, const float* bias, const float* gamma, const float* beta,
                            const float* stats, const float* dy, float* dx, float* dbias, float* dgamma_n,
                            float* dbeta_n, int N, int C, int HW, int groups, bool silu, bool nhwc, void* stream);
int group_norm_smem_capacity();
int concat_group_norm_act(const void* x1, const void* x2, const void* gamma, const void* beta, void* y, int dtype,
                          int N, int C1, int C, int HW, int groups, float eps, bool silu, void* stream);
int residual_add(const void* a, const void* r, const void* r2, const void* bias, void* y, int dtype, int64_t total,
                 int C, int HW, bool nhwc, void* stream);
int residual_stats_chunks(int dtype, int N, int C, int HW);
int residual_add_stats(const void* a, const void* r, const void* r2, const void* bias, void* y, float* part, int dtype,
                       int N, int C, int HW, void* stream);
int channel_sums(const void* x, float* part, int dtype, int N, int C, int HW, void* stream);
int first_conv3x3_stats(const void* x, const void* w, const void* bias, void* y, float* part, int dtype, int N, int Cout,
                        int H, int W, void* stream);
int subpixel_stats(const void* z, const void* bias, void* y, float* part, int dtype, int N, int C, int H, int W,
                   void* stream);
int group_norm_apply(const void* x, const float* part, int chunks, const void* x2, const float* part2, int chunks2,
                     const void* bias, int64_t ldb, const void* gamma, const void* beta, void* y, int dtype, int N, int C,
                     int C1, int HW, int groups, float eps, bool silu, void* stream);
int upsample2_nhwc(const void* x, void* y, int dtype, int N, int C, int H, int W, void* stream);
bool small_attention_fits(int L, int D);
int first_conv3x3(const void* x, const void* w, const void* bias, void* y, int dtype, int N, int Cout, int H, int W,
                  void* stream);
int small_attention(const void* qkv, void* out, int dtype, int B, int L, int heads, int D, void* stream);
int column_sum_blocks(int64_t M, int C);
int column_sum(const float* x, float* out, float* partial, unsigned* counter, int B, int64_t M, int C, int64_t ld,
               int64_t bs, void* stream);
}
#endif

namespace dlab {

bool fused_kernels_compiled() {
#ifdef DLAB_FUSED_CUDA
    return true;
#else
    return false;
#endif
}

namespace {
// Whether the environment variable `name` is set to `value`.
bool env_is(const char* name, const char* value) {
    const char* env = std::getenv(name);
    return env && std::strcmp(env, value) == 0;
}
bool switched_on() {
    // On wherever they were compiled (checked and measured on an H200: 1.15x on a guided step);
    // DLAB_FUSED_KERNELS=0 turns them off, for comparisons.
    static const bool on = !env_is("DLAB_FUSED_KERNELS", "0");
    return on;
}
// x laid out channels-last ([N, H, W, C] in memory) and not also plain contiguous (they coincide
// when H * W or C is 1).
bool channels_last_only(const at::Tensor& x) {
    return !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}
// Marks the arguments of a function whose body this build leaves out as used.
template <typename... A> void unused(const A&...) {}
}  // namespace

int fused_group_norm_kernel() {
    // 2: checked against float64 and timed on an H200 (docs/eval/half-h200.log: a batch-256 guided
    // pass 4.48-4.55 ms against kernel 1's 5.12-5.13; 2.5 TB/s against 1.07 at [256, 64, 28, 28]).
    // DLAB_GN_KERNEL=1 picks kernel 1, for comparisons.
    static const int k = env_is("DLAB_GN_KERNEL", "1") ? 1 : 2;
    return k;
}

namespace {
std::atomic<int> g_precision{-1};  // set_inference_precision()'s choice; -1: the environment's
}  // namespace

at::ScalarType half_inference_dtype() {
    if (const int p = g_precision.load(); p >= 0) return static_cast<at::ScalarType>(p);
    static const at::ScalarType t = env_is("DLAB_HALF", "fp16")   ? at::kHalf
                                    : env_is("DLAB_HALF", "bf16") ? at::kBFloat16
                                                                  : at::kFloat;
    return t;
}

void set_inference_precision(at::ScalarType t) {
    if (t != at::kFloat && t != at::kHalf && t != at::kBFloat16)
        throw std::invalid_argument("set_inference_precision: float32, float16 or bfloat16 only");
    g_precision.store(static_cast<int>(t));
}

std::optional<at::ScalarType> parse_precision(const std::string& name) {
    if (name == "fp32" || name == "float32") return at::kFloat;
    if (name == "fp16" || name == "float16") return at::kHalf;
    if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
    return std::nullopt;
}

std::string precision_name(at::ScalarType t) {
    return t == at::kHalf ? "fp16" : t == at::kBFloat16 ? "bf16" : t == at::kFloat ? "fp32" : std::string(c10::toString(t));
}

std::optional<std::string> choose_inference_precision(const std::string& name, const c10::Device& device) {
    const auto p = parse_precision(name);
    if (!p) return "unknown precision '" + name + "' (fp32, fp16 or bf16)";
    if (*p != at::kFloat && !device.is_cuda())
        return "--precision " + name + " is for CUDA devices; this run is on " + device.str();
    set_inference_precision(*p);
    return std::nullopt;
}

bool channels_last_enabled() {
    static const bool on = !env_is("DLAB_CHANNELS_LAST", "0");
    return fused_kernels_compiled() && switched_on() && on;
}

bool train_channels_last_enabled() {
    static const bool on = !env_is("DLAB_TRAIN_CHANNELS_LAST", "0");
    return channels_last_enabled() && on;
}

bool fused_group_norm_usable(const at::Tensor& x, const at::Tensor& bias, int64_t groups) {
    if (!fused_kernels_compiled() || !switched_on() || c10::GradMode::is_enabled()) return false;
    if (!x.defined() || !x.is_cuda() || x.dim() != 4 || !(x.is_contiguous() || channels_last_only(x))) return false;
    const at::ScalarType t = x.scalar_type();
    if (t != at::kFloat && t != at::kHalf && t != at::kBFloat16) return false;
    const int64_t C = x.size(1);
    if (groups < 1 || C % groups != 0 || x.numel() >= (int64_t(1) << 31)) return false;
#ifdef DLAB_FUSED_CUDA
    // The half types have kernel 2 only, which holds a group in shared memory.
    if (t != at::kFloat && C / groups * x.size(2) * x.size(3) > cuda_kernels::group_norm_smem_capacity()) return false;
#endif
    if (bias.defined() && (bias.device() != x.device() || bias.scalar_type() != t || bias.dim() != 2 ||
                           bias.size(0) != x.size(0) || bias.size(1) != C))
        return false;
    return true;
}

bool fused_group_norm_train_usable(const at::Tensor& x, const at::Tensor& bias, int64_t groups) {
    // On by default since checked and timed on the H200 (bench --check-fused: y and all four
    // gradients within 2e-7 of float64; 60 training steps match LibTorch's to 6 digits; +12 % img/s:
    // docs/eval/train-profile-h200.log); DLAB_GN_TRAIN=0 goes back to LibTorch's GroupNorm.
    static const bool on = !env_is("DLAB_GN_TRAIN", "0");
    if (!on || !fused_kernels_compiled() || !switched_on() || !c10::GradMode::is_enabled()) return false;
    if (!x.defined() || !x.is_cuda() || x.dim() != 4 || x.scalar_type() != at::kFloat) return false;
    const bool nhwc = channels_last_only(x);
    if (!x.is_contiguous() && !nhwc) return false;
    const int64_t C = x.size(1);
    if (groups < 1 || C % groups != 0 || x.numel() >= (int64_t(1) << 31)) return false;
    if (nhwc && C / groups > 1024) return false;  // the channels-last backward: a thread a channel at least
    return !bias.defined() || (bias.device() == x.device() && bias.scalar_type() == at::kFloat && bias.dim() == 2 &&
                               bias.size(0) == x.size(0) && bias.size(1) == C);
}

bool fused_attention_usable(const at::Tensor& x) {
#if TORCH_VERSION_MAJOR >= 2
    return switched_on() && x.defined() && x.is_cuda();
#else
    (void)x;
    return false;
#endif
}

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
    return at::scaled_dot_product_attention(q, k, v);
#else
    (void)q;
    (void)k;
    (void)v;
    throw std::logic_error("fused_attention: needs LibTorch 2.x");
#endif
}

#ifdef DLAB_FUSED_CUDA
namespace {
int kernel_dtype(const at::Tensor& x) {
    return x.scalar_type() == at::kHalf ? 1 : x.scalar_type() == at::kBFloat16 ? 2 : 0;
}

// The per-channel partial sums that the residual kernel left beside its outputs (cuda_kernels::
// residual_add_stats), kept for the GroupNorm that reads such an output next (the next block's
// first norm, the attention's norm, the decoder's concatenation, the last norm). An entry holds a
// weak reference to the output's TensorImpl (so no other tensor can take its address while the
// entry lives) and the output's version at the time: any later in-place change bumps the version
// and the sums are no longer used. DLAB_GN_STATS=0 turns this off (every GroupNorm holds its group
// in shared memory, kernel 2), for comparisons.
struct KnownSums {
    c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> ref;
    const c10::TensorImpl* impl;
    int64_t version;
    at::Tensor part;  // float [N, chunks, 2, C]
};
std::mutex g_sums_mutex;
std::vector<KnownSums> g_sums;

bool sums_switched_on() {
    static const bool on = !env_is("DLAB_GN_STATS", "0");
    return on;
}

void remember_sums(const at::Tensor& x, at::Tensor part) {
    const std::lock_guard<std::mutex> lock(g_sums_mutex);
    const c10::TensorImpl* impl = x.unsafeGetTensorImpl();
    for (size_t i = 0; i < g_sums.size();)
        if (g_sums[i].ref.expired() || g_sums[i].impl == impl) g_sums.erase(g_sums.begin() + long(i));
        else ++i;
    if (g_sums.size() >= 64) g_sums.erase(g_sums.begin());  // bounded (a UNet keeps ~10 alive)
    g_sums.push_back({c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(x.getIntrusivePtr()), impl,
                      x._version(), std::move(part)});
}

// x's partial sums where they are known and x has not changed since; else undefined.
at::Tensor sums_of(const at::Tensor& x) {
    if (!sums_switched_on() || !x.defined() || x.is_inference() || x.dim() != 4 || !channels_last_only(x)) return {};
    const std::lock_guard<std::mutex> lock(g_sums_mutex);
    for (const KnownSums& e : g_sums)
        if (e.impl == x.unsafeGetTensorImpl() && !e.ref.expired() && e.version == x._version() &&
            e.part.size(0) == x.size(0) && e.part.size(3) == x.size(1))
            return e.part;
    return {};
}

// A GroupNorm input whose sums nobody left (a convolution's output: a residual block's second norm,
// the decoder's first after an upsampling, the encoder's after the first or a downsampling
// convolution) gets them from a pass of its own (cuda_kernels::channel_sums: one read), then streams
// like the others, where a sample is at most 64 KB: on an H200 (bench --check-fused, float32) the two
// passes took 0.030 ms against kernel 2's 0.034 at [512, 64, 14, 14] (50 KB a sample), but 0.063
// against 0.052 at [512, 32, 28, 28] (100 KB), where kernel 2's block a group reads enough at once.
// DLAB_GN_SUMS_PASS=0 keeps kernel 2 everywhere (for comparisons); DLAB_GN_SUMS_MAX_KB=K moves the bound.
bool sums_pass_on(const at::Tensor& x) {
    static const bool on = !env_is("DLAB_GN_SUMS_PASS", "0");
    static const int64_t most = [] {
        const char* v = std::getenv("DLAB_GN_SUMS_MAX_KB");
        return (v ? std::max<int64_t>(0, std::atoll(v)) : int64_t(64)) * 1024;
    }();
    return on && x.dim() == 4 && x.size(0) > 0 && int64_t(x.element_size()) * (x.numel() / x.size(0)) <= most &&
           channels_last_only(x);
}

// x's partial sums: those its writer left, else from the sums pass; undefined where neither can be had.
at::Tensor sums_or_pass(const at::Tensor& x) {
    if (at::Tensor part = sums_of(x); part.defined()) return part;
    if (!sums_pass_on(x)) return {};
    const int N = int(x.size(0)), C = int(x.size(1)), HW = int(x.size(2) * x.size(3));
    const int chunks = cuda_kernels::residual_stats_chunks(kernel_dtype(x), N, C, HW);
    if (chunks <= 0) return {};
    at::Tensor part = at::empty({N, chunks, 2, C}, x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous));
    const int err = cuda_kernels::channel_sums(x.data_ptr(), part.data_ptr<float>(), kernel_dtype(x), N, C, HW,
                                               c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    if (err > 0) throw std::runtime_error("the GroupNorm sums kernel did not launch (CUDA error " + std::to_string(err) + ")");
    return err == 0 ? part : at::Tensor();
}
}  // namespace
#endif

bool fused_sums_known(const at::Tensor& x) {
#ifdef DLAB_FUSED_CUDA
    return sums_of(x).defined();
#else
    (void)x;
    return false;
#endif
}

at::Tensor fused_group_norm_act(const at::Tensor& x, const at::Tensor& bias, int64_t groups,
                                const at::Tensor& gamma, const at::Tensor& beta, double eps,
                                bool silu, int kernel) {
#ifdef DLAB_FUSED_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    // A bias with unit column stride is read in place (the UNet's: column slices of one product).
    const at::Tensor b = !bias.defined() ? at::Tensor() : bias.stride(1) == 1 && bias.stride(0) >= bias.size(1) ? bias : bias.contiguous();
    const at::Tensor g = gamma.contiguous(), be = beta.contiguous();
    // Channels-last with x's sums known (the residual kernel's) or from the sums pass: one streaming
    // pass (the bias, a residual block's time embedding, folded into the sums).
    if (kernel != 1 && kernel != 2 && g.scalar_type() == x.scalar_type() && be.scalar_type() == x.scalar_type() &&
        (!b.defined() || b.scalar_type() == x.scalar_type()))
        if (const at::Tensor part = sums_or_pass(x); part.defined()) {
            at::Tensor y = at::empty_like(x);
            const int err = cuda_kernels::group_norm_apply(
                x.data_ptr(), part.data_ptr<float>(), int(part.size(1)), nullptr, nullptr, 0,
                b.defined() ? b.data_ptr() : nullptr, b.defined() ? b.stride(0) : 0, g.data_ptr(), be.data_ptr(),
                y.data_ptr(), kernel_dtype(x), int(x.size(0)), int(x.size(1)), int(x.size(1)), int(x.size(2) * x.size(3)),
                int(groups), float(eps), silu, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
            if (err == 0) return y;
            if (err > 0) throw std::runtime_error("the streaming GroupNorm kernel did not launch (CUDA error " + std::to_string(err) + ")");
        }
    if (kernel != 1 && kernel != 2) kernel = fused_group_norm_kernel();
    at::Tensor y = at::empty_like(x);  // the same layout as x
    if (g.scalar_type() != x.scalar_type() || be.scalar_type() != x.scalar_type())
        throw std::invalid_argument("fused_group_norm_act: the norm's weights are " + std::string(c10::toString(g.scalar_type())) +
                                    ", its input " + c10::toString(x.scalar_type()));
    const int dtype = x.scalar_type() == at::kHalf ? 1 : x.scalar_type() == at::kBFloat16 ? 2 : 0;
    const int err = cuda_kernels::group_norm_act(
        x.data_ptr(), b.defined() ? b.data_ptr() : nullptr, g.data_ptr(), be.data_ptr(), y.data_ptr(), dtype,
        int(x.size(0)), int(x.size(1)),
        int(x.size(2) * x.size(3)), int(groups), float(eps), silu, channels_last_only(x), kernel, nullptr,
        c10::cuda::getCurrentCUDAStream(x.device().index()).stream(), b.defined() ? b.stride(0) : 0);
    if (err != 0)
        throw std::runtime_error("the fused GroupNorm kernel did not launch (CUDA error " +
                                 std::to_string(err) + ")");
    return y;
#else
    unused(x, bias, groups, gamma, beta, eps, silu, kernel);
    throw std::logic_error("fused_group_norm_act: this build has no fused CUDA kernels");
#endif
}


namespace {
// DLAB_FUSED_RESIDUAL=0 keeps LibTorch's bias passes, adds and concatenations, for comparisons.
bool residual_switched_on() {
    static const bool on = !env_is("DLAB_FUSED_RESIDUAL", "0");
    return on && fused_kernels_compiled() && switched_on();
}
}  // namespace

bool fused_residual_usable(const at::Tensor& x) {
    if (!residual_switched_on() || c10::GradMode::is_enabled()) return false;
    if (!x.defined() || !x.is_cuda() || x.dim() != 4 || !(x.is_contiguous() || channels_last_only(x))) return false;
    const at::ScalarType t = x.scalar_type();
    return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

namespace {
// The residual kernel's operands beside h: r and r2 undefined or of h's shape, strides, type and
// device; bias undefined or [C] of h's type and device.
bool operands_fit(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2) {
    auto like_h = [&](const at::Tensor& t) {
        return !t.defined() || (t.sizes() == h.sizes() && t.strides() == h.strides() && t.scalar_type() == h.scalar_type() &&
                                t.device() == h.device());
    };
    return like_h(r) && like_h(r2) &&
           (!bias.defined() || (bias.dim() == 1 && bias.size(0) == h.size(1) && bias.scalar_type() == h.scalar_type() &&
                                bias.device() == h.device()));
}

#ifdef DLAB_FUSED_CUDA
// y = h + r + r2 + bias by the residual kernel (y may be h); an undefined or empty r, r2 or bias is none.
void launch_residual(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2, at::Tensor& y) {
    const c10::cuda::CUDAGuard guard(h.device());
    auto ptr = [](const at::Tensor& t) -> const void* { return t.defined() && t.numel() > 0 ? t.data_ptr() : nullptr; };
    const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
    const int err = cuda_kernels::residual_add(h.data_ptr(), ptr(r), ptr(r2), ptr(b), y.data_ptr(), kernel_dtype(h), h.numel(),
                                               int(h.size(1)), int(h.size(2) * h.size(3)), channels_last_only(h),
                                               c10::cuda::getCurrentCUDAStream(h.device().index()).stream());
    if (err != 0) throw std::runtime_error("the fused residual kernel did not launch (CUDA error " + std::to_string(err) + ")");
}
#endif
}  // namespace

bool fused_residual_fits(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2) {
    return fused_residual_usable(h) && operands_fit(h, r, bias, r2);
}

at::Tensor fused_residual_add_(at::Tensor h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2) {
#ifdef DLAB_FUSED_CUDA
    if (!fused_residual_fits(h, r, bias, r2))
        throw std::invalid_argument("fused_residual_add_: h, r, r2 (and bias [C]) must be CUDA tensors of one shape, type and layout");
    // Channels-last: the kernel that also leaves the sums of h for the GroupNorm that may read it next.
    if (sums_switched_on() && channels_last_only(h) && !h.is_inference()) {
        const int N = int(h.size(0)), C = int(h.size(1)), HW = int(h.size(2) * h.size(3));
        const int chunks = cuda_kernels::residual_stats_chunks(kernel_dtype(h), N, C, HW);
        if (chunks > 0) {
            const c10::cuda::CUDAGuard guard(h.device());
            at::Tensor part = at::empty({N, chunks, 2, C}, h.options().dtype(at::kFloat));
            auto ptr = [](const at::Tensor& t) -> const void* { return t.defined() && t.numel() > 0 ? t.data_ptr() : nullptr; };
            const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
            const int err = cuda_kernels::residual_add_stats(h.data_ptr(), ptr(r), ptr(r2), ptr(b), h.data_ptr(),
                                                             part.data_ptr<float>(), kernel_dtype(h), N, C, HW,
                                                             c10::cuda::getCurrentCUDAStream(h.device().index()).stream());
            if (err > 0) throw std::runtime_error("the fused residual kernel did not launch (CUDA error " + std::to_string(err) + ")");
            if (err == 0) {
                remember_sums(h, std::move(part));
                return h;
            }
        }
    }
    launch_residual(h, r, bias, r2, h);
    return h;
#else
    unused(h, r, bias, r2);
    throw std::logic_error("fused_residual_add_: this build has no fused CUDA kernels");
#endif
}

bool fused_residual_train_usable(const at::Tensor& h) {
    return residual_switched_on() && c10::GradMode::is_enabled() && h.defined() && h.is_cuda() && h.dim() == 4 &&
           h.scalar_type() == at::kFloat && channels_last_only(h);
}

bool fused_residual_train_fits(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2) {
    return fused_residual_train_usable(h) && operands_fit(h, r, bias, r2);  // h float32, so the bias too
}

#ifdef DLAB_FUSED_CUDA
namespace {
// Column sums of t's memory read as B batches of M rows of C floats (t contiguous in some layout:
// [B, M, C] in memory), by the column-sum kernel: [B, C]. Undefined where the kernel cannot take
// them (the callers then use LibTorch's sum) or DLAB_FUSED_COLSUM=0 (for comparisons).
at::Tensor column_sums(const at::Tensor& t, int64_t B, int64_t M, int64_t C) {
    static const bool on = !env_is("DLAB_FUSED_COLSUM", "0");
    if (!on || t.scalar_type() != at::kFloat || !t.is_cuda() || B < 1 || M < 1 || C < 1 || B * M * C != t.numel() ||
        C > 1024 || B > 65535)
        return {};
    const c10::cuda::CUDAGuard guard(t.device());
    const int P = cuda_kernels::column_sum_blocks(M, int(C));
    at::Tensor out = at::empty({B, C}, t.options());
    at::Tensor partial = P > 1 ? at::empty({B * P * C}, t.options()) : at::Tensor();
    at::Tensor counter = P > 1 ? at::zeros({B}, t.options().dtype(at::kInt)) : at::Tensor();
    const int err = cuda_kernels::column_sum(t.data_ptr<float>(), out.data_ptr<float>(),
                                             P > 1 ? partial.data_ptr<float>() : nullptr,
                                             P > 1 ? reinterpret_cast<unsigned*>(counter.data_ptr<int>()) : nullptr, int(B), M,
                                             int(C), C, M * C, c10::cuda::getCurrentCUDAStream(t.device().index()).stream());
    if (err < 0) return {};
    if (err != 0) throw std::runtime_error("the column-sum kernel did not launch (CUDA error " + std::to_string(err) + ")");
    return out;
}

// h + r + r2 + bias with autograd (training); an empty tensor stands for a missing r, bias or r2
// (apply() cannot take an undefined one).
struct ResidualAddFunction : torch::autograd::Function<ResidualAddFunction> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h, const at::Tensor& r,
                              const at::Tensor& bias, const at::Tensor& r2) {
        at::Tensor y = at::empty_like(h);
        launch_residual(h, r, bias, r2, y);
        ctx->saved_data["r"] = r.numel() > 0;
        ctx->saved_data["bias"] = bias.numel() > 0;
        ctx->saved_data["r2"] = r2.numel() > 0;
        return y;
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        // A gradient that arrives strided (a slice of a concatenation's) is made dense once here,
        // not once by each convolution's backward that it goes on to.
        const at::Tensor dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
        auto has = [&](const char* k) { return ctx->saved_data[k].toBool(); };
        at::Tensor dbias;
        if (has("bias")) {
            const int64_t C = dy.size(1);
            dbias = column_sums(dy, 1, dy.numel() / C, C);
            dbias = dbias.defined() ? dbias.view({C}) : dy.sum({0, 2, 3});
        }
        return {dy, has("r") ? dy : at::Tensor(), dbias, has("r2") ? dy : at::Tensor()};
    }
};
}  // namespace
#endif

at::Tensor fused_residual_add_train(const at::Tensor& h, const at::Tensor& r, const at::Tensor& bias, const at::Tensor& r2) {
#ifdef DLAB_FUSED_CUDA
    if (!fused_residual_train_fits(h, r, bias, r2))
        throw std::invalid_argument("fused_residual_add_train: h, r, r2 (and bias [C]) must be channels-last float32 CUDA "
                                    "tensors of one shape");
    const at::Tensor none = at::empty({0}, h.options());
    return ResidualAddFunction::apply(h, r.defined() ? r : none, bias.defined() ? bias : none, r2.defined() ? r2 : none);
#else
    unused(h, r, bias, r2);
    throw std::logic_error("fused_residual_add_train: this build has no fused CUDA kernels");
#endif
}

at::Tensor fused_channel_sums(const at::Tensor& x) {
#ifdef DLAB_FUSED_CUDA
    const bool dense = x.dim() == 2 ? x.is_contiguous() : x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t C = x.dim() >= 2 ? x.size(1) : 0;
    const at::Tensor out = dense && C > 0 ? column_sums(x, 1, x.numel() / C, C) : at::Tensor();
    if (!out.defined())
        throw std::invalid_argument("fused_channel_sums: x must be a float32 CUDA tensor [M, C] or channels-last [N, C, H, W], C <= 1024");
    return out.view({C});
#else
    unused(x);
    throw std::logic_error("fused_channel_sums: this build has no fused CUDA kernels");
#endif
}

at::Tensor subpixel_weight(const at::Tensor& w) {
    if (!w.defined() || w.dim() != 4 || w.size(2) != 3 || w.size(3) != 3)
        throw std::invalid_argument("subpixel_weight: expected a 3x3 convolution's weight [Cout, Cin, 3, 3]");
    // Output row 2i + u of the upsampled map's 3x3 window reads the small map's rows i - 1, i
    // (u = 0: tap row 0, then rows 1 and 2) or i, i + 1 (u = 1: rows 0 and 1, then row 2); so for columns.
    const auto f = w.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous);
    const at::Tensor taps = at::tensor({1.f, 0.f, 0.f, 0.f, 1.f, 1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 1.f}, f.device(at::kCPU))
                                .view({2, 2, 3})
                                .to(w.device());
    const at::Tensor wf = w.to(at::kFloat).contiguous();
    std::vector<at::Tensor> phases;
    for (int64_t u = 0; u < 2; ++u)
        for (int64_t v = 0; v < 2; ++v) phases.push_back(at::einsum("ar,oirs,bs->oiab", {taps[u], wf, taps[v]}));
    return at::cat(phases, 0).to(w.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
}

namespace {
// x [N, Cin, H, W] channels-last, upsampled and convolved into C channels, with weight (3x3 or the
// phases') of x's type and device and bias [C]: whether fused_upsample_conv can take them.
bool upsample_conv_fits(const at::Tensor& x, int64_t C, const at::Tensor& weight, const at::Tensor& bias) {
    // DLAB_SUBPIXEL=0: the upsampling kernel, cuDNN's 3x3 convolution and the bias pass (for comparisons).
    static const bool on = !env_is("DLAB_SUBPIXEL", "0");
    if (!on || !fused_residual_usable(x) || !channels_last_only(x) || C < 1 || weight.dim() != 4 ||
        weight.size(1) != x.size(1) || weight.scalar_type() != x.scalar_type() || weight.device() != x.device() ||
        !bias.defined() || bias.dim() != 1 || bias.size(0) != C || bias.scalar_type() != x.scalar_type() ||
        bias.device() != x.device())
        return false;
#ifdef DLAB_FUSED_CUDA
    const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
    return N >= 1 && H >= 1 && W >= 1 && N * 4 * C * (H + 1) * (W + 1) < (int64_t(1) << 31) &&
           cuda_kernels::residual_stats_chunks(kernel_dtype(x), int(N), int(C), int(4 * H * W)) > 0;
#else
    return false;
#endif
}
}  // namespace

bool fused_upsample_conv_usable(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
    return weight.defined() && weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 &&
           upsample_conv_fits(x, weight.size(0), weight, bias);
}

at::Tensor fused_upsample_conv(const at::Tensor& x, const at::Tensor& w4, const at::Tensor& bias) {
#ifdef DLAB_FUSED_CUDA
    const int64_t C = w4.defined() && w4.dim() == 4 ? w4.size(0) / 4 : 0;
    if (C < 1 || w4.size(0) != 4 * C || w4.size(2) != 2 || w4.size(3) != 2 || !upsample_conv_fits(x, C, w4, bias))
        throw std::invalid_argument("fused_upsample_conv: arguments it cannot take");
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
    at::Tensor z = at::conv2d(x, w4, {}, 1, 1);  // [N, 4C, H + 1, W + 1]
    if (!channels_last_only(z)) z = z.contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor y = at::empty({N, C, 2 * H, 2 * W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    const int chunks = cuda_kernels::residual_stats_chunks(kernel_dtype(x), int(N), int(C), int(4 * H * W));
    at::Tensor part = at::empty({N, chunks, 2, C}, x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous));
    const at::Tensor b = bias.contiguous();
    const int err = cuda_kernels::subpixel_stats(z.data_ptr(), b.data_ptr(), y.data_ptr(), part.data_ptr<float>(), kernel_dtype(x),
                                                 int(N), int(C), int(H), int(W),
                                                 c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    if (err != 0) throw std::runtime_error("the upsampling convolution's kernel did not launch (CUDA error " + std::to_string(err) + ")");
    if (sums_switched_on() && !y.is_inference()) remember_sums(y, std::move(part));
    return y;
#else
    unused(x, w4, bias);
    throw std::logic_error("fused_upsample_conv: this build has no fused CUDA kernels");
#endif
}

at::Tensor fused_upsample2(const at::Tensor& x) {
#ifdef DLAB_FUSED_CUDA
    if (!fused_residual_usable(x) || !channels_last_only(x))
        throw std::invalid_argument("fused_upsample2: x must be a channels-last CUDA tensor");
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    at::Tensor y = at::empty({N, C, 2 * H, 2 * W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    const int err = cuda_kernels::upsample2_nhwc(x.data_ptr(), y.data_ptr(), kernel_dtype(x), int(N), int(C), int(H), int(W),
                                                 c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    if (err != 0) throw std::runtime_error("the upsampling kernel did not launch (CUDA error " + std::to_string(err) + ")");
    return y;
#else
    unused(x);
    throw std::logic_error("fused_upsample2: this build has no fused CUDA kernels");
#endif
}

bool fused_first_conv_usable(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
    // DLAB_FIRST_CONV=0: cuDNN's convolution, a conversion to channels-last and the bias pass (for comparisons).
    static const bool on = !env_is("DLAB_FIRST_CONV", "0");
    if (!on || !fused_residual_usable(x) || x.size(1) != 1 || !x.is_contiguous()) return false;
    if (!weight.defined() || !bias.defined() || weight.dim() != 4 || weight.size(1) != 1 || weight.size(2) != 3 ||
        weight.size(3) != 3 || !weight.is_contiguous() || weight.scalar_type() != x.scalar_type() ||
        weight.device() != x.device())
        return false;
#ifdef DLAB_FUSED_CUDA
    const int64_t capacity = cuda_kernels::group_norm_smem_capacity();  // the weights and biases in shared memory
#else
    const int64_t capacity = 0;
#endif
    const int64_t C = weight.size(0);
    return C >= 1 && C * 10 <= capacity && bias.dim() == 1 && bias.size(0) == C && bias.scalar_type() == x.scalar_type() &&
           bias.device() == x.device() && x.size(0) * C * x.size(2) * x.size(3) < (int64_t(1) << 31);
}

at::Tensor fused_first_conv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
#ifdef DLAB_FUSED_CUDA
    if (!fused_first_conv_usable(x, weight, bias))
        throw std::invalid_argument("fused_first_conv: x must be a contiguous CUDA tensor [N, 1, H, W], weight [C, 1, 3, 3] "
                                    "and bias [C] of its type");
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t N = x.size(0), C = weight.size(0), H = x.size(2), W = x.size(3);
    const at::Tensor b = bias.contiguous();
    at::Tensor y = at::empty({N, C, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    // With the output's per-channel sums for the two GroupNorms that read it (the first block's first
    // norm and the decoder's last concatenation): they then stream (DLAB_GN_STATS=0 or
    // DLAB_FIRST_CONV_SUMS=0: not, for comparisons).
    static const bool with_sums = !env_is("DLAB_FIRST_CONV_SUMS", "0");
    const int chunks = with_sums && sums_switched_on() && !y.is_inference()
                           ? cuda_kernels::residual_stats_chunks(kernel_dtype(x), int(N), int(C), int(H * W)) : 0;
    if (chunks > 0) {
        at::Tensor part = at::empty({N, chunks, 2, C}, x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous));
        const int e = cuda_kernels::first_conv3x3_stats(x.data_ptr(), weight.data_ptr(), b.data_ptr(), y.data_ptr(),
                                                        part.data_ptr<float>(), kernel_dtype(x), int(N), int(C), int(H), int(W),
                                                        c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
        if (e > 0) throw std::runtime_error("the first-convolution kernel did not launch (CUDA error " + std::to_string(e) + ")");
        if (e == 0) {
            remember_sums(y, std::move(part));
            return y;
        }
    }
    const int err = cuda_kernels::first_conv3x3(x.data_ptr(), weight.data_ptr(), b.data_ptr(), y.data_ptr(), kernel_dtype(x),
                                                int(N), int(C), int(H), int(W),
                                                c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
    if (err != 0) throw std::runtime_error("the first-convolution kernel did not launch (CUDA error " + std::to_string(err) + ")");
    return y;
#else
    unused(x, weight, bias);
    throw std::logic_error("fused_first_conv: this build has no fused CUDA kernels");
#endif
}

bool fused_small_attention_usable(const at::Tensor& qkv, int64_t heads) {
    // DLAB_SMALL_ATTENTION=0: LibTorch's scaled_dot_product_attention instead (for comparisons).
    static const bool on = !env_is("DLAB_SMALL_ATTENTION", "0");
    if (!on || !fused_residual_usable(qkv) || !channels_last_only(qkv) || heads < 1 || qkv.size(1) % (3 * heads) != 0)
        return false;
    if (qkv.numel() >= (int64_t(1) << 31) || reinterpret_cast<uintptr_t>(qkv.data_ptr()) % 16 != 0) return false;
#ifdef DLAB_FUSED_CUDA
    return cuda_kernels::small_attention_fits(int(qkv.size(2) * qkv.size(3)), int(qkv.size(1) / (3 * heads)));
#else
    return false;
#endif
}

at::Tensor fused_small_attention(const at::Tensor& qkv, int64_t heads) {
#ifdef DLAB_FUSED_CUDA
    if (!fused_small_attention_usable(qkv, heads))
        throw std::invalid_argument("fused_small_attention: qkv must be a channels-last CUDA tensor [B, 3 * heads * D, H, W] "
                                    "with D 8, 16, 32 or 64 and 2 * H * W * D <= 12288");
    const c10::cuda::CUDAGuard guard(qkv.device());
    const int64_t B = qkv.size(0), C = qkv.size(1) / 3, H = qkv.size(2), W = qkv.size(3);
    at::Tensor out = at::empty({B, C, H, W}, qkv.options().memory_format(at::MemoryFormat::ChannelsLast));
    const int err = cuda_kernels::small_attention(qkv.data_ptr(), out.data_ptr(), kernel_dtype(qkv), int(B), int(H * W),
                                                  int(heads), int(C / heads),
                                                  c10::cuda::getCurrentCUDAStream(qkv.device().index()).stream());
    if (err != 0) throw std::runtime_error("the attention kernel did not launch (CUDA error " + std::to_string(err) + ")");
    return out;
#else
    unused(qkv, heads);
    throw std::logic_error("fused_small_attention: this build has no fused CUDA kernels");
#endif
}

bool fused_concat_usable(const at::Tensor& x1, const at::Tensor& x2, int64_t groups) {
    // DLAB_FUSED_CONCAT=0: the decoder concatenates, then one GroupNorm and one skip convolution over
    // the concatenation (for comparisons: the concatenation's write against a second 1x1 convolution).
    static const bool on = !env_is("DLAB_FUSED_CONCAT", "0");
    if (!on) return false;
    if (!fused_residual_usable(x1) || !x2.defined() || x2.dim() != 4 || !channels_last_only(x1) || !channels_last_only(x2))
        return false;
    if (x2.device() != x1.device() || x2.scalar_type() != x1.scalar_type() || x2.size(0) != x1.size(0) ||
        x2.size(2) != x1.size(2) || x2.size(3) != x1.size(3))
        return false;
    const int64_t C = x1.size(1) + x2.size(1);
    if (groups < 1 || C % groups != 0 || x1.size(0) * C * x1.size(2) * x1.size(3) >= (int64_t(1) << 31)) return false;
#ifdef DLAB_FUSED_CUDA
    return C / groups * x1.size(2) * x1.size(3) <= cuda_kernels::group_norm_smem_capacity();
#else
    return false;
#endif
}

at::Tensor fused_concat_group_norm_act(const at::Tensor& x1, const at::Tensor& x2, int64_t groups,
                                       const at::Tensor& gamma, const at::Tensor& beta, double eps, bool silu, int kernel) {
#ifdef DLAB_FUSED_CUDA
    if (!fused_concat_usable(x1, x2, groups) || gamma.scalar_type() != x1.scalar_type() ||
        beta.scalar_type() != x1.scalar_type() || gamma.numel() != x1.size(1) + x2.size(1) || beta.numel() != gamma.numel())
        throw std::invalid_argument("fused_concat_group_norm_act: arguments it cannot take");
    const c10::cuda::CUDAGuard guard(x1.device());
    const int64_t N = x1.size(0), C1 = x1.size(1), C = C1 + x2.size(1), H = x1.size(2), W = x1.size(3);
    at::Tensor y = at::empty({N, C, H, W}, x1.options().memory_format(at::MemoryFormat::ChannelsLast));
    const at::Tensor g = gamma.contiguous(), be = beta.contiguous();
    // Each part's sums known (the residual kernel's) or from the sums pass: one streaming pass.
    const at::Tensor p1 = kernel == 2 ? at::Tensor() : sums_or_pass(x1), p2 = p1.defined() ? sums_or_pass(x2) : at::Tensor();
    if (p2.defined()) {
        const int err = cuda_kernels::group_norm_apply(
            x1.data_ptr(), p1.data_ptr<float>(), int(p1.size(1)), x2.data_ptr(), p2.data_ptr<float>(), int(p2.size(1)),
            nullptr, 0, g.data_ptr(), be.data_ptr(), y.data_ptr(), kernel_dtype(x1), int(N), int(C), int(C1), int(H * W),
            int(groups), float(eps), silu, c10::cuda::getCurrentCUDAStream(x1.device().index()).stream());
        if (err == 0) return y;
        if (err > 0) throw std::runtime_error("the streaming GroupNorm kernel did not launch (CUDA error " + std::to_string(err) + ")");
    }
    const int err = cuda_kernels::concat_group_norm_act(
        x1.data_ptr(), x2.data_ptr(), g.data_ptr(), be.data_ptr(), y.data_ptr(), kernel_dtype(x1), int(N), int(C1), int(C),
        int(H * W), int(groups), float(eps), silu, c10::cuda::getCurrentCUDAStream(x1.device().index()).stream());
    if (err != 0) throw std::runtime_error("the fused concatenation GroupNorm kernel did not launch (CUDA error " + std::to_string(err) + ")");
    return y;
#else
    unused(x1, x2, groups, gamma, beta, eps, silu, kernel);
    throw std::logic_error("fused_concat_group_norm_act: this build has no fused CUDA kernels");
#endif
}

#ifdef DLAB_FUSED_CUDA
namespace {
// act(GroupNorm(x + bias)) with its own backward kernel (training): the forward pass keeps each
// (sample, group)'s mean and 1/sqrt(var + eps) for it.
struct GroupNormActFunction : torch::autograd::Function<GroupNormActFunction> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& bias,
                              const at::Tensor& gamma, const at::Tensor& beta, int64_t groups, double eps, bool silu) {
        const c10::cuda::CUDAGuard guard(x.device());
        // An empty bias stands for none (apply() cannot take an undefined tensor).
        const at::Tensor b = bias.numel() > 0 ? bias.contiguous() : at::Tensor();
        const at::Tensor g = gamma.contiguous(), be = beta.contiguous();
        at::Tensor y = at::empty_like(x);
        at::Tensor stats = at::empty({x.size(0) * groups, 2}, x.options());
        const int err = cuda_kernels::group_norm_act(
            x.data_ptr(), b.defined() ? b.data_ptr() : nullptr, g.data_ptr(), be.data_ptr(), y.data_ptr(), 0,
            int(x.size(0)), int(x.size(1)), int(x.size(2) * x.size(3)), int(groups), float(eps), silu,
            channels_last_only(x), fused_group_norm_kernel(), stats.data_ptr<float>(), c10::cuda::getCurrentCUDAStream(x.device().index()).stream(), 0);
        if (err != 0) throw std::runtime_error("the fused GroupNorm kernel did not launch (CUDA error " + std::to_string(err) + ")");
        ctx->save_for_backward({x, b, g, be, stats});
        ctx->saved_data["groups"] = groups;
        ctx->saved_data["silu"] = silu;
        return y;
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &x = saved[0], &b = saved[1], &g = saved[2], &be = saved[3], &stats = saved[4];
        const int64_t groups = ctx->saved_data["groups"].toInt();
        const bool silu = ctx->saved_data["silu"].toBool();
        const c10::cuda::CUDAGuard guard(x.device());
        // Channels-last training (trainer.cpp): x, dy and dx in NHWC, else all plain.
        const bool nhwc = channels_last_only(x);
        const at::Tensor dy = grads[0].contiguous(nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
        const int64_t N = x.size(0), C = x.size(1);
        at::Tensor dx = at::empty_like(x);
        at::Tensor dbias = b.defined() ? at::empty({N, C}, x.options()) : at::Tensor();
        // The per-sample terms of gamma's and beta's gradients side by side: one reduction for both.
        at::Tensor dgb_n = at::empty({2, N, C}, x.options());
        at::Tensor dgamma_n = dgb_n.select(0, 0), dbeta_n = dgb_n.select(0, 1);
        const int err = cuda_kernels::group_norm_act_backward(
            x.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr, g.data_ptr<float>(), be.data_ptr<float>(),
            stats.data_ptr<float>(), dy.data_ptr<float>(), dx.data_ptr<float>(),
            dbias.defined() ? dbias.data_ptr<float>() : nullptr, dgamma_n.data_ptr<float>(), dbeta_n.data_ptr<float>(),
            int(N), int(C), int(x.size(2) * x.size(3)), int(groups), silu, nhwc,
            c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
        if (err != 0) throw std::runtime_error("the fused GroupNorm backward kernel did not launch (CUDA error " + std::to_string(err) + ")");
        at::Tensor dgb = column_sums(dgb_n, 2, N, C);
        if (!dgb.defined()) dgb = dgb_n.sum(1);
        return {dx, dbias, dgb.select(0, 0), dgb.select(0, 1), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};
}  // namespace
#endif

at::Tensor fused_group_norm_act_train(const at::Tensor& x, const at::Tensor& bias, int64_t groups,
                                      const at::Tensor& gamma, const at::Tensor& beta, double eps, bool silu) {
#ifdef DLAB_FUSED_CUDA
    if (gamma.scalar_type() != at::kFloat || beta.scalar_type() != at::kFloat)
        throw std::invalid_argument("fused_group_norm_act_train: float32 only");
    // Autograd functions take defined tensors only: no bias travels as an empty one.
    return GroupNormActFunction::apply(x, bias.defined() ? bias : at::empty({0}, x.options()), gamma, beta, groups, eps,
                                       silu);
#else
    unused(x, bias, groups, gamma, beta, eps, silu);
    throw std::logic_error("fused_group_norm_act_train: this build has no fused CUDA kernels");
#endif
}

}  // namespace dlab
