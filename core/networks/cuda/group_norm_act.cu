// GroupNorm (+ a per-(sample, channel) bias added first) (+ SiLU) in one kernel, for inference on
// CUDA (issue 17): LibTorch runs the same as an add, two or three GroupNorm kernels and a SiLU.
// Plain CUDA C++ with raw pointers (no ATen headers: nvcc never sees LibTorch); the checks and the
// tensors are in core/networks/fused_ops.cpp. Built only when a CUDA compiler and a CUDA LibTorch
// are there.
#include <cuda_runtime.h>

#include <cstdint>

namespace {

// The sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? shared[lane] : 0.f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) shared[32] = v;
    }
    __syncthreads();
    const float total = shared[32];
    __syncthreads();  // shared[] may be written again by the next call
    return total;
}

// One block per (sample n, group g) of x, float32, laid out [N, C, HW] (contiguous) or, with
// `nhwc`, [N, HW, C] (channels-last):
// y = act(((x + bias[n, c]) - mean) / sqrt(var + eps) * gamma[c] + beta[c]), the mean and the
// (biased) variance over the group's C/groups channels and HW positions, computed in two passes.
// The group's i-th element is channel c0 + i / HW at position i % HW ([N, C, HW]), or channel
// c0 + i % cg at position i / cg ([N, HW, C]: consecutive threads read consecutive channels).
__global__ void group_norm_act_kernel(const float* __restrict__ x, const float* __restrict__ bias,
                                      const float* __restrict__ gamma,
                                      const float* __restrict__ beta, float* __restrict__ y, int C,
                                      int HW, int groups, float eps, bool silu, bool nhwc) {
    __shared__ float shared[33];
    const int n = blockIdx.x / groups, g = blockIdx.x % groups;
    const int cg = C / groups, c0 = g * cg;
    const int count = cg * HW;
    const int64_t sample = int64_t(n) * C * HW;
    const float* bn = bias ? bias + int64_t(n) * C : nullptr;
    // Offset of the group's i-th element from the sample's start, and its channel.
    auto at = [&](int i, int& c) -> int64_t {
        if (nhwc) {
            const int p = i / cg;
            c = c0 + (i - p * cg);
            return int64_t(p) * C + c;
        }
        c = c0 + i / HW;
        return int64_t(c) * HW + (i - (c - c0) * HW);
    };

    float s = 0.f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        int c;
        const int64_t o = at(i, c);
        s += x[sample + o] + (bn ? bn[c] : 0.f);
    }
    const float mean = block_sum(s, shared) / float(count);
    float q = 0.f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        int c;
        const int64_t o = at(i, c);
        const float d = x[sample + o] + (bn ? bn[c] : 0.f) - mean;
        q += d * d;
    }
    const float rstd = rsqrtf(block_sum(q, shared) / float(count) + eps);
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        int c;
        const int64_t o = at(i, c);
        float v = (x[sample + o] + (bn ? bn[c] : 0.f) - mean) * rstd * gamma[c] + beta[c];
        if (silu) v = v / (1.f + __expf(-v));
        y[sample + o] = v;
    }
}

// Vectors of VEC floats for the loads and stores of group_norm_act_smem_kernel.
template <int VEC> struct Pack;
template <> struct Pack<1> { using T = float; };
template <> struct Pack<2> { using T = float2; };
template <> struct Pack<4> { using T = float4; };

// VEC floats loaded and stored as one vector.
template <int VEC> struct alignas(VEC * sizeof(float)) Vec {
    using T = typename Pack<VEC>::T;
    float a[VEC];
    __device__ void load(const float* p) { *reinterpret_cast<T*>(a) = *reinterpret_cast<const T*>(p); }
    __device__ void store(float* p) const { *reinterpret_cast<T*>(p) = *reinterpret_cast<const T*>(a); }
};

// The group's values fit in this many floats of shared memory (48 KB, the limit without opting in).
constexpr int kSharedFloats = 12288;

// The same result as group_norm_act_kernel, reading x from global memory once: one block per
// (sample n, group g) copies the group's values (x + bias) into shared memory with VEC-float
// loads, takes the mean and the variance from there and writes y with VEC-float stores.
// Preconditions (group_norm_act checks them): count = C / groups * HW <= kSharedFloats; x and y
// aligned to VEC floats; NHWC: (C / groups) % VEC == 0, so a vector holds VEC channels of one
// position; NCHW: HW % VEC == 0, so a vector lies in one channel (the group is the contiguous
// range from channel c0). The k-th vector sits at shared vals[k].
template <int VEC>
__global__ void group_norm_act_smem_kernel(const float* __restrict__ x, const float* __restrict__ bias,
                                           const float* __restrict__ gamma,
                                           const float* __restrict__ beta, float* __restrict__ y,
                                           int C, int HW, int groups, float eps, bool silu, bool nhwc) {
    extern __shared__ float vals_f[];
    Vec<VEC>* vals = reinterpret_cast<Vec<VEC>*>(vals_f);
    __shared__ float shared[33];
    const int n = blockIdx.x / groups, g = blockIdx.x % groups;
    const int cg = C / groups, c0 = g * cg;
    const int count = cg * HW, nvec = count / VEC;
    const int per = cg / VEC;  // NHWC: vectors per position
    const float* xs = x + int64_t(n) * C * HW;
    float* ys = y + int64_t(n) * C * HW;
    const float* bn = bias ? bias + int64_t(n) * C : nullptr;
    // Offset of the k-th vector from the sample's start, and the channel of its first element
    // (its e-th element's channel: c + e in NHWC, c in NCHW).
    auto locate = [&](int k, int& c) -> int64_t {
        if (nhwc) {
            const int p = per == 1 ? k : k / per;
            c = c0 + (k - p * per) * VEC;
            return int64_t(p) * C + c;
        }
        const int i = k * VEC;
        c = c0 + i / HW;
        return int64_t(c0) * HW + i;
    };
    const int dc = nhwc ? 1 : 0;

    float s = 0.f;
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
        int c;
        Vec<VEC> v;
        v.load(xs + locate(k, c));
#pragma unroll
        for (int e = 0; e < VEC; ++e) s += (v.a[e] += bn ? bn[c + e * dc] : 0.f);
        vals[k] = v;
    }
    const float mean = block_sum(s, shared) / float(count);  // block_sum's barrier orders vals[]
    float q = 0.f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const float d = vals_f[i] - mean;
        q += d * d;
    }
    const float rstd = rsqrtf(block_sum(q, shared) / float(count) + eps);
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
        int c;
        const int64_t o = locate(k, c);
        Vec<VEC> v = vals[k];
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const int ce = c + e * dc;
            const float t = (v.a[e] - mean) * rstd * gamma[ce] + beta[ce];
            v.a[e] = silu ? t / (1.f + __expf(-t)) : t;
        }
        v.store(ys + o);
    }
}

template <int VEC>
void launch_smem(const float* x, const float* bias, const float* gamma, const float* beta, float* y,
                 int N, int C, int HW, int groups, float eps, bool silu, bool nhwc, cudaStream_t stream) {
    const int count = (C / groups) * HW, nvec = count / VEC;
    const int threads = nvec >= 2048 ? 512 : nvec >= 256 ? 256 : 128;
    group_norm_act_smem_kernel<VEC><<<N * groups, threads, count * sizeof(float), stream>>>(
        x, bias, gamma, beta, y, C, HW, groups, eps, silu, nhwc);
}

bool aligned(const void* p, int floats) {
    return reinterpret_cast<uintptr_t>(p) % (uintptr_t(floats) * sizeof(float)) == 0;
}

}  // namespace

namespace dlab::cuda_kernels {

// x and y [N, C, HW], or [N, HW, C] with `nhwc`. `kernel` 1: three passes over global memory
// (group_norm_act_kernel); 2: one read into shared memory (group_norm_act_smem_kernel) where the
// group fits, else 1. Launches on `stream` (a cudaStream_t); returns the launch's cudaError_t as
// an int (0: success).
int group_norm_act(const float* x, const float* bias, const float* gamma, const float* beta,
                   float* y, int N, int C, int HW, int groups, float eps, bool silu, bool nhwc,
                   int kernel, void* stream) {
    const int count = (C / groups) * HW;
    if (kernel == 2 && count <= kSharedFloats) {
        // The single-read kernel with the widest vectors the layout and the pointers allow.
        const int unit = nhwc ? C / groups : HW;
        const auto cs = static_cast<cudaStream_t>(stream);
        if (unit % 4 == 0 && aligned(x, 4) && aligned(y, 4))
            launch_smem<4>(x, bias, gamma, beta, y, N, C, HW, groups, eps, silu, nhwc, cs);
        else if (unit % 2 == 0 && aligned(x, 2) && aligned(y, 2))
            launch_smem<2>(x, bias, gamma, beta, y, N, C, HW, groups, eps, silu, nhwc, cs);
        else
            launch_smem<1>(x, bias, gamma, beta, y, N, C, HW, groups, eps, silu, nhwc, cs);
        return static_cast<int>(cudaGetLastError());
    }
    const int threads = count >= 8192 ? 512 : count >= 1024 ? 256 : 128;
    group_norm_act_kernel<<<N * groups, threads, 0, static_cast<cudaStream_t>(stream)>>>(
        x, bias, gamma, beta, y, C, HW, groups, eps, silu, nhwc);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace dlab::cuda_kernels
