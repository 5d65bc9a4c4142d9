// GroupNorm (+ a per-(sample, channel) bias added first) (+ SiLU) in one kernel, for inference on
// CUDA (issue 17): LibTorch runs the same as an add, two or three GroupNorm kernels and a SiLU.
// Plain CUDA C++ with raw pointers (no ATen headers: nvcc never sees LibTorch); the checks and the
// tensors are in core/networks/fused_ops.cpp. Built only when a CUDA compiler and a CUDA LibTorch
// are there.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <type_traits>

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
// With `stats` (training), the block also writes its mean and 1/sqrt(var + eps) to stats[2 * block]
// and stats[2 * block + 1], for the backward pass.
__global__ void group_norm_act_kernel(const float* __restrict__ x, const float* __restrict__ bias,
                                      const float* __restrict__ gamma,
                                      const float* __restrict__ beta, float* __restrict__ y, int C,
                                      int HW, int groups, float eps, bool silu, bool nhwc,
                                      float* __restrict__ stats, int64_t ldb) {
    __shared__ float shared[33];
    const int n = blockIdx.x / groups, g = blockIdx.x % groups;
    const int cg = C / groups, c0 = g * cg;
    const int count = cg * HW;
    const int64_t sample = int64_t(n) * C * HW;
    const float* bn = bias ? bias + int64_t(n) * ldb : nullptr;
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
    if (stats && threadIdx.x == 0) {
        stats[2 * blockIdx.x] = mean;
        stats[2 * blockIdx.x + 1] = rstd;
    }
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        int c;
        const int64_t o = at(i, c);
        float v = (x[sample + o] + (bn ? bn[c] : 0.f) - mean) * rstd * gamma[c] + beta[c];
        if (silu) v = v / (1.f + __expf(-v));
        y[sample + o] = v;
    }
}

// The sum of v over the threads of one group (group_norm_act_smem_kernel with gpb > 1): lanes
// with the same lane % per hold the same group's values, so a shuffle over the offsets >= per sums
// a warp's share of each, and one lane per slot adds it to gs[group] in shared memory (zeroed
// before). Every thread gets its group's sum.
__device__ float group_sum(float v, int mine, int per, float* gs) {
    for (int o = 16; o >= per; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) < per) atomicAdd(&gs[mine], v);
    __syncthreads();
    return gs[mine];
}

// Storage types of kernel 2 (float, __half, __nv_bfloat16), converted to and from float.
__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ inline T from_float(float v);
template <> __device__ inline float from_float<float>(float v) { return v; }
template <> __device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// VEC values of type T, aligned to their size so that a copy is one vector load or store (at most
// 16 bytes; the launcher picks VEC).
template <typename T, int VEC> struct alignas(VEC * sizeof(T)) Vec {
    T a[VEC];
};

// The group's values fit in this many floats of shared memory (48 KB, the limit without opting in).
constexpr int kSharedFloats = 12288;

// The same result as group_norm_act_kernel, reading x from global memory once: one block per
// (sample n, group g) copies the group's values (x + bias, as float) into shared memory with
// VEC-element vector loads, takes the mean and the variance from there and writes y with vector
// stores. T is the storage type of x, bias, gamma, beta and y; the arithmetic is float.
// Preconditions (group_norm_act checks them): count = C / groups * HW <= kSharedFloats; x and y
// aligned to VEC elements; NHWC: (C / groups) % VEC == 0, so a vector holds VEC channels of one
// position; NCHW: HW % VEC == 0, so a vector lies in one channel (the group is the contiguous
// range from channel c0). The k-th vector's values sit at shared vals[k].
// With x2 (NHWC only), the input is the channel concatenation of x ([N, HW, C1]) and x2 ([N, HW,
// C - C1]) without it ever being written (the UNet decoder's skip connections): a vector's
// channels lie in one of them (C1 % VEC == 0, checked by the launcher); y has all C channels.
template <typename T, int VEC>
__global__ void group_norm_act_smem_kernel(const T* __restrict__ x, const T* __restrict__ bias,
                                           const T* __restrict__ gamma, const T* __restrict__ beta,
                                           T* __restrict__ y, int C, int HW, int groups, float eps,
                                           bool silu, bool nhwc, float* __restrict__ stats, int64_t ldb,
                                           const T* __restrict__ x2 = nullptr, int C1 = 0, int gpb = 1) {
    extern __shared__ __align__(16) float vals_f[];  // 16-byte vector accesses (Vec of 4 or 8 floats)
    Vec<float, VEC>* vals = reinterpret_cast<Vec<float, VEC>*>(vals_f);
    __shared__ float shared[33];
    __shared__ float gsum[2][32];  // gpb > 1: each group's sum and sum of squares
    // The block's gpb consecutive groups (NHWC; 1 elsewhere): c0 and the cb channels after it.
    const int n = blockIdx.x / (groups / gpb), g = (blockIdx.x % (groups / gpb)) * gpb;
    const int cg = C / groups, cb = cg * gpb, c0 = g * cg;
    const int count = cb * HW, nvec = count / VEC;
    const int per = cb / VEC;  // NHWC: vectors per position
    // gpb > 1 (the launcher's preconditions: NHWC, per a power of 2 at most 32, blockDim.x a multiple
    // of it): a thread's vectors k = threadIdx.x + j * blockDim.x all hold the same channels, so the
    // thread belongs to one group, `mine`.
    const int mine = gpb > 1 ? (threadIdx.x % per) * VEC / cg : 0;
    if (gpb > 1 && threadIdx.x < 32) gsum[0][threadIdx.x] = gsum[1][threadIdx.x] = 0.f;
    const T* xs = x + int64_t(n) * (x2 ? C1 : C) * HW;
    const T* x2s = x2 ? x2 + int64_t(n) * (C - C1) * HW : nullptr;
    T* ys = y + int64_t(n) * C * HW;
    const T* bn = bias ? bias + int64_t(n) * ldb : nullptr;
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
    // Where the k-th vector is read: y's place in x, or in x or x2 of a concatenation.
    auto source = [&](int k, int& c) -> const T* {
        if (!x2) return xs + locate(k, c);
        const int p = per == 1 ? k : k / per;
        c = c0 + (k - p * per) * VEC;
        return c < C1 ? xs + int64_t(p) * C1 + c : x2s + int64_t(p) * (C - C1) + (c - C1);
    };
    const int dc = nhwc ? 1 : 0;

    float s = 0.f;
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
        int c;
        const Vec<T, VEC> in = *reinterpret_cast<const Vec<T, VEC>*>(source(k, c));
        Vec<float, VEC> v;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            v.a[e] = to_float(in.a[e]) + (bn ? to_float(bn[c + e * dc]) : 0.f);
            s += v.a[e];
        }
        vals[k] = v;
    }
    float mean, rstd;
    if (gpb == 1) {
        mean = block_sum(s, shared) / float(count);  // block_sum's barrier orders vals[]
        float q = 0.f;
        for (int i = threadIdx.x; i < count; i += blockDim.x) {
            const float d = vals_f[i] - mean;
            q += d * d;
        }
        rstd = rsqrtf(block_sum(q, shared) / float(count) + eps);
    } else {
        __syncthreads();  // gsum zeroed (the loop above wrote only the thread's own vals[])
        mean = group_sum(s, mine, per, gsum[0]) / float(cg * HW);
        float q = 0.f;
        for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
            const Vec<float, VEC> v = vals[k];
#pragma unroll
            for (int e = 0; e < VEC; ++e) q += (v.a[e] - mean) * (v.a[e] - mean);
        }
        rstd = rsqrtf(group_sum(q, mine, per, gsum[1]) / float(cg * HW) + eps);
    }
    // Training: each group's mean and 1/sqrt(var + eps), as kernel 1, by one thread of the group
    // (gpb > 1: the thread of position 0 whose vector starts the group).
    if (stats && (gpb == 1 ? threadIdx.x == 0 : threadIdx.x < per && (threadIdx.x * VEC) % cg == 0)) {
        const int gi = n * groups + g + mine;
        stats[2 * gi] = mean;
        stats[2 * gi + 1] = rstd;
    }
    for (int k = threadIdx.x; k < nvec; k += blockDim.x) {
        int c;
        const int64_t o = locate(k, c);
        const Vec<float, VEC> v = vals[k];
        Vec<T, VEC> out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const int ce = c + e * dc;
            const float t = (v.a[e] - mean) * rstd * to_float(gamma[ce]) + to_float(beta[ce]);
            out.a[e] = from_float<T>(silu ? t / (1.f + __expf(-t)) : t);
        }
        *reinterpret_cast<Vec<T, VEC>*>(ys + o) = out;
    }
}

// The backward passes' A and B (below): the group's means of dz gamma and dz gamma xh, from each
// of its cg channels' sums Sdz (sdz[j]) and Sdz xh (sdzx[j]) over its HW positions; every thread.
__device__ void group_means(const float* __restrict__ gamma, const float* sdz, const float* sdzx, int cg, int HW,
                            float& A, float& B) {
    A = 0.f;
    B = 0.f;
    for (int j = 0; j < cg; ++j) {
        A += gamma[j] * sdz[j];
        B += gamma[j] * sdzx[j];
    }
    const float count = float(cg) * float(HW);
    A /= count;
    B /= count;
}

// The backward pass of y = act(GroupNorm(u)), u = x + bias[n, c] (training; float32, [N, C, HW]
// contiguous), one block per (sample n, group g), a warp per channel. With xh = (u - mean) * rstd,
// z = xh * gamma + beta and dz = dy * act'(z) (SiLU: s (1 + z (1 - s)), s = sigmoid(z)):
//   dx = rstd * (dz gamma - A - xh B), A and B the group's means of dz gamma and dz gamma xh;
//   per (n, c): dbias = sum over HW of dx = rstd (gamma Sdz - HW A - B Sxh), and the partial sums
//   Sdz xh and Sdz of dgamma and dbeta (summed over n by the caller).
// Pass 1 takes the per-channel sums (warp shuffles, no block barrier per channel), pass 2 writes dx
// (re-reading x and dy, which a group's ~tens of KB leave in L2). Shared memory: 3 * C / groups floats.
__global__ void group_norm_act_backward_kernel(const float* __restrict__ x, const float* __restrict__ bias,
                                               const float* __restrict__ gamma, const float* __restrict__ beta,
                                               const float* __restrict__ stats, const float* __restrict__ dy,
                                               float* __restrict__ dx, float* __restrict__ dbias,
                                               float* __restrict__ dgamma_n, float* __restrict__ dbeta_n, int C,
                                               int HW, int groups, bool silu) {
    extern __shared__ float sums[];  // [3][cg]: Sdz, Sdz xh, Sxh of each channel
    const int n = blockIdx.x / groups, g = blockIdx.x % groups;
    const int cg = C / groups, c0 = g * cg;
    const float mean = stats[2 * blockIdx.x], rstd = stats[2 * blockIdx.x + 1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int64_t base = (int64_t(n) * C + c0) * HW;
    // dz and xh at element i of channel j (c = c0 + j).
    auto grad_z = [&](int j, int i, float b, float gm, float bt, float& xh) {
        const int64_t o = base + int64_t(j) * HW + i;
        xh = (x[o] + b - mean) * rstd;
        float dz = dy[o];
        if (silu) {
            const float z = xh * gm + bt, sg = 1.f / (1.f + __expf(-z));
            dz *= sg * (1.f + z * (1.f - sg));
        }
        return dz;
    };
    for (int j = warp; j < cg; j += warps) {
        const int c = c0 + j;
        const float b = bias ? bias[int64_t(n) * C + c] : 0.f, gm = gamma[c], bt = beta[c];
        float sdz = 0.f, sdzx = 0.f, sx = 0.f;
        for (int i = lane; i < HW; i += 32) {
            float xh;
            const float dz = grad_z(j, i, b, gm, bt, xh);
            sdz += dz;
            sdzx += dz * xh;
            sx += xh;
        }
        for (int o = 16; o > 0; o >>= 1) {
            sdz += __shfl_xor_sync(0xffffffffu, sdz, o);
            sdzx += __shfl_xor_sync(0xffffffffu, sdzx, o);
            sx += __shfl_xor_sync(0xffffffffu, sx, o);
        }
        if (lane == 0) {
            sums[j] = sdz;
            sums[cg + j] = sdzx;
            sums[2 * cg + j] = sx;
        }
    }
    __syncthreads();
    float A, B;
    group_means(gamma + c0, sums, sums + cg, cg, HW, A, B);
    for (int j = threadIdx.x; j < cg; j += blockDim.x) {
        const int64_t nc = int64_t(n) * C + c0 + j;
        dgamma_n[nc] = sums[cg + j];
        dbeta_n[nc] = sums[j];
        if (dbias) dbias[nc] = rstd * (gamma[c0 + j] * sums[j] - float(HW) * A - B * sums[2 * cg + j]);
    }
    for (int j = warp; j < cg; j += warps) {
        const int c = c0 + j;
        const float b = bias ? bias[int64_t(n) * C + c] : 0.f, gm = gamma[c], bt = beta[c];
        for (int i = lane; i < HW; i += 32) {
            float xh;
            const float dz = grad_z(j, i, b, gm, bt, xh);
            dx[base + int64_t(j) * HW + i] = rstd * (dz * gm - A - xh * B);
        }
    }
}

// The same backward pass for channels-last tensors ([N, HW, C]: a position's channels are
// adjacent), one block per (sample n, gpb consecutive groups: a position's cb = gpb * cg channels
// that the block reads span 32 bytes at least where the groups allow, a whole sector). The cb
// channels split into TPP = cb / VEC vectors (VEC 4, 2 or 1, as the channels and pointers allow;
// a vector's channels lie in one group, `mine`): thread t takes vector jv = t % TPP of the
// positions t / TPP, t / TPP + P, ... (P = blockDim.x / TPP), so it reads a vector of x and of dy
// a position; it keeps the dz and xh of its first K positions in registers for the second pass
// (positions beyond them are read again). Where TPP divides 32, the lanes of a warp with the same
// lane % TPP hold the same channels and their sums meet through shuffles, a row of partial sums a
// warp; else each thread leaves its own row (one per position slot). The rows are then summed per
// channel. Shared memory: 3 * cb * (rows + 1) floats.
template <int VEC, int K>
__global__ void group_norm_act_backward_nhwc_kernel(const float* __restrict__ x, const float* __restrict__ bias,
                                                    const float* __restrict__ gamma, const float* __restrict__ beta,
                                                    const float* __restrict__ stats, const float* __restrict__ dy,
                                                    float* __restrict__ dx, float* __restrict__ dbias,
                                                    float* __restrict__ dgamma_n, float* __restrict__ dbeta_n, int C,
                                                    int HW, int groups, int gpb, bool silu) {
    extern __shared__ float smem[];
    const int blocks_per_sample = groups / gpb;
    const int n = blockIdx.x / blocks_per_sample, g0 = (blockIdx.x % blocks_per_sample) * gpb;
    const int cg = C / groups, cb = cg * gpb, c0 = g0 * cg, TPP = cb / VEC, P = blockDim.x / TPP;
    const int jv = threadIdx.x % TPP, p0 = threadIdx.x / TPP, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int mine = jv * VEC / cg;  // the thread's group in the block
    const bool shuffled = 32 % TPP == 0;
    const int rows = shuffled ? (blockDim.x + 31) >> 5 : P;
    float* part = smem;                  // [rows][3][cb]
    float* sums = smem + rows * 3 * cb;  // [3][cb]: Sdz, Sdz xh, Sxh of each channel
    const int gi = n * groups + g0 + mine;
    const float mean = stats[2 * gi], rstd = stats[2 * gi + 1];
    const int cv = c0 + jv * VEC;  // the thread's first channel
    float b[VEC], gm[VEC], bt[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
        b[e] = bias ? bias[int64_t(n) * C + cv + e] : 0.f;
        gm[e] = gamma[cv + e];
        bt[e] = beta[cv + e];
    }
    const int64_t base = int64_t(n) * HW * C + cv;
    // dz and xh of the thread's VEC channels at position p.
    auto grad_z = [&](int p, float* dz, float* xh) {
        const int64_t o = base + int64_t(p) * C;
        const Vec<float, VEC> xv = *reinterpret_cast<const Vec<float, VEC>*>(x + o);
        const Vec<float, VEC> dv = *reinterpret_cast<const Vec<float, VEC>*>(dy + o);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            xh[e] = (xv.a[e] + b[e] - mean) * rstd;
            dz[e] = dv.a[e];
            if (silu) {
                const float z = xh[e] * gm[e] + bt[e], sg = 1.f / (1.f + __expf(-z));
                dz[e] *= sg * (1.f + z * (1.f - sg));
            }
        }
    };
    float sdz[VEC], sdzx[VEC], sx[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) sdz[e] = sdzx[e] = sx[e] = 0.f;
    auto accumulate = [&](const float* dz, const float* xh) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            sdz[e] += dz[e];
            sdzx[e] += dz[e] * xh[e];
            sx[e] += xh[e];
        }
    };
    float kdz[K > 0 ? K : 1][VEC], kxh[K > 0 ? K : 1][VEC];  // the first K positions' dz and xh
#pragma unroll
    for (int k = 0; k < K; ++k) {
        const int p = p0 + k * P;
        if (p < HW) {
            grad_z(p, kdz[k], kxh[k]);
            accumulate(kdz[k], kxh[k]);
        }
    }
    for (int p = p0 + K * P; p < HW; p += P) {
        float dz[VEC], xh[VEC];
        grad_z(p, dz, xh);
        accumulate(dz, xh);
    }
    if (shuffled) {
#pragma unroll
        for (int e = 0; e < VEC; ++e)
            for (int o = 16; o >= TPP; o >>= 1) {
                sdz[e] += __shfl_xor_sync(0xffffffffu, sdz[e], o);
                sdzx[e] += __shfl_xor_sync(0xffffffffu, sdzx[e], o);
                sx[e] += __shfl_xor_sync(0xffffffffu, sx[e], o);
            }
    }
    if (p0 < P && (!shuffled || lane < TPP)) {
        float* w = part + (shuffled ? warp : p0) * 3 * cb + jv * VEC;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            w[e] = sdz[e];
            w[cb + e] = sdzx[e];
            w[2 * cb + e] = sx[e];
        }
    }
    __syncthreads();
    for (int k = threadIdx.x; k < 3 * cb; k += blockDim.x) {
        float v = 0.f;
        for (int q = 0; q < rows; ++q) v += part[q * 3 * cb + k];
        sums[k] = v;
    }
    __syncthreads();
    float A, B;
    group_means(gamma + c0 + mine * cg, sums + mine * cg, sums + cb + mine * cg, cg, HW, A, B);
    if (p0 == 0) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const int j = jv * VEC + e;
            const int64_t nc = int64_t(n) * C + c0 + j;
            dgamma_n[nc] = sums[cb + j];
            dbeta_n[nc] = sums[j];
            if (dbias) dbias[nc] = rstd * (gm[e] * sums[j] - float(HW) * A - B * sums[2 * cb + j]);
        }
    }
    auto write = [&](int p, const float* dz, const float* xh) {
        Vec<float, VEC> out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) out.a[e] = rstd * (dz[e] * gm[e] - A - xh[e] * B);
        *reinterpret_cast<Vec<float, VEC>*>(dx + base + int64_t(p) * C) = out;
    };
#pragma unroll
    for (int k = 0; k < K; ++k) {
        const int p = p0 + k * P;
        if (p < HW) write(p, kdz[k], kxh[k]);
    }
    for (int p = p0 + K * P; p < HW; p += P) {
        float dz[VEC], xh[VEC];
        grad_z(p, dz, xh);
        write(p, dz, xh);
    }
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
int gcd(int a, int b) { return b == 0 ? a : gcd(b, a % b); }

// The residual kernels' VEC values: a[ia + e] + r[i + e] + r2[i + e] + bias[c + e * step] (r, r2 and
// bias optional; step 1 in channels-last, 0 where the vector's values share channel c), rounded to T.
template <typename T, int VEC>
__device__ __forceinline__ Vec<T, VEC> residual_value(const T* a, const T* __restrict__ r, const T* __restrict__ r2,
                                                     const T* __restrict__ bias, int64_t ia, int64_t i, int c, int step) {
    const Vec<T, VEC> va = *reinterpret_cast<const Vec<T, VEC>*>(a + ia);
    Vec<T, VEC> vr, vr2;
    if (r) vr = *reinterpret_cast<const Vec<T, VEC>*>(r + i);
    if (r2) vr2 = *reinterpret_cast<const Vec<T, VEC>*>(r2 + i);
    Vec<T, VEC> out;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
        float v = to_float(va.a[e]);
        if (r) v += to_float(vr.a[e]);
        if (r2) v += to_float(vr2.a[e]);
        if (bias) v += to_float(bias[c + e * step]);
        out.a[e] = from_float<T>(v);
    }
    return out;
}

// The UNet's first convolution's VEC values from channel c at (i, j): bias + the 3x3 neighbourhood
// of xn (one channel, H x W, zero padding) weighted by the weights; wb holds [C][9] weights, then
// [C] biases (float), rounded to T.
template <typename T, int VEC>
__device__ __forceinline__ Vec<T, VEC> first_conv_value(const T* __restrict__ xn, const float* wb, int C, int H, int W,
                                                       int i, int j, int c) {
    float in[9];
#pragma unroll
    for (int di = 0; di < 3; ++di)
#pragma unroll
        for (int dj = 0; dj < 3; ++dj) {
            const int r = i + di - 1, col = j + dj - 1;
            in[di * 3 + dj] = r >= 0 && r < H && col >= 0 && col < W ? to_float(xn[int64_t(r) * W + col]) : 0.f;
        }
    Vec<T, VEC> out;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
        const float* wc = wb + (c + e) * 9;
        float acc = wb[C * 9 + c + e];
#pragma unroll
        for (int q = 0; q < 9; ++q) acc += in[q] * wc[q];
        out.a[e] = from_float<T>(acc);
    }
    return out;
}

// y = a + r + r2 + bias[c] over N * C * HW values, a, r, r2 and y in one layout ([N, C, HW], or
// [N, HW, C] with `nhwc`), r, r2 and bias [C] each optional (null); y may be a (in place). A thread
// per VEC values (one vector load of each input, one store), VEC dividing the channel run (NHWC: C;
// NCHW: HW) and the pointers aligned to it, so that a vector's values share a channel (NCHW) or
// take consecutive ones (NHWC).
template <typename T, int VEC>
__global__ void residual_add_kernel(const T* a, const T* __restrict__ r, const T* __restrict__ r2,
                                    const T* __restrict__ bias, T* y, int64_t nvec, int C, int HW, bool nhwc) {
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < nvec; k += int64_t(gridDim.x) * blockDim.x) {
        const int64_t i = k * VEC;
        const int c = nhwc ? int(i % C) : int((i / HW) % C);
        *reinterpret_cast<Vec<T, VEC>*>(y + i) = residual_value<T, VEC>(a, r, r2, bias, i, i, c, nhwc ? 1 : 0);
    }
}

// residual_add_kernel in channels-last ([N, HW, C]) that also leaves the sums a later GroupNorm of y
// needs, so that the GroupNorm becomes one streaming pass (group_norm_apply_kernel) instead of a
// block per group holding it in shared memory. Block (chunk j, sample n) takes positions [j * P,
// (j + 1) * P) of sample n: a thread a slot of VEC channels (per = C / VEC slots, a power of 2 at
// most 32, so that lanes with one slot meet in warp shuffles) and every (blockDim.x / per)-th
// position. It writes its chunk's per-channel sum of y and of y^2 (of the values as stored) to
// part[n, j, 0, :] and part[n, j, 1, :] (float): partial sums by fixed chunks, added in a fixed order
// (warps, then chunks by the reader), so that the results are the same every run.
// (At most 64 registers a thread: 4 blocks of 256 an SM; the 8-half vectors' version took 68-72 and
// ran 3.) MODE 1 (a alone; r, r2, bias and y null): it only reads a and leaves a's sums, the sums
// pass of a GroupNorm whose input came from elsewhere (a convolution). MODE 2 (r and r2 null): the
// nearest-neighbour upsampling by 2 + 3x3 convolution as a 2x2 convolution of the small map with
// four output phases (fused_upsample_conv): a is that convolution's output [N, H + 1, W + 1, 4C]
// (HW = 4 H W output positions, W given as w2), y[n, 2i + u, 2j + v, c] = a[n, i + u, j + v,
// (2u + v) C + c] + bias[c]. MODE 3 (r2 null): the UNet's first convolution as first_conv3x3_kernel
// computes it (a the one-channel image [N, H, W], W given as w2; r its weights [C, 9]; bias [C]).
template <typename T, int VEC, int MODE = 0>
__global__ void __launch_bounds__(256, 4) residual_stats_kernel(const T* a, const T* __restrict__ r, const T* __restrict__ r2,
                                      const T* __restrict__ bias, T* y, float* __restrict__ part, int C, int HW, int P,
                                      int w2 = 0) {
    extern __shared__ float red[];  // [warps][2][C]; MODE 3: then [C][9] weights and [C] biases
    const int chunk = blockIdx.x, n = blockIdx.y, chunks = gridDim.x;
    float* wb = red + (blockDim.x >> 5) * 2 * C;
    if (MODE == 3) {
        for (int t = threadIdx.x; t < C * 10; t += blockDim.x) wb[t] = to_float(t < C * 9 ? r[t] : bias[t - C * 9]);
        __syncthreads();
    }
    const int per = C / VEC, slot = threadIdx.x % per, rows = blockDim.x / per;
    const int c = slot * VEC, end = min(HW, (chunk + 1) * P);
    float s[VEC], q[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) s[e] = q[e] = 0.f;
    const int64_t base = int64_t(n) * HW * C + c;
    // MODE 2: sample n's phases in a, [H + 1, W + 1, 4C].
    const int64_t zbase = MODE == 2 ? int64_t(n) * (HW / (4 * w2) + 1) * (w2 + 1) * 4 * C + c : 0;
    for (int p = chunk * P + int(threadIdx.x) / per; p < end; p += rows) {
        const int64_t i = base + int64_t(p) * C;
        Vec<T, VEC> out;
        if constexpr (MODE == 3) {
            const int oi = p / w2;
            out = first_conv_value<T, VEC>(a + int64_t(n) * HW, wb, C, HW / w2, w2, oi, p - oi * w2, c);
        } else {
            int64_t src = i;
            if (MODE == 2) {
                const int oy = p / (2 * w2), ox = p - oy * 2 * w2, u = oy & 1, v = ox & 1;
                src = zbase + (int64_t((oy >> 1) + u) * (w2 + 1) + (ox >> 1) + v) * 4 * C + (2 * u + v) * C;
            }
            out = residual_value<T, VEC>(a, r, r2, bias, src, i, c, 1);
        }
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const float o = to_float(out.a[e]);
            s[e] += o;
            q[e] += o * o;
        }
        if (MODE != 1) *reinterpret_cast<Vec<T, VEC>*>(y + i) = out;
    }
    // threads in rows * per = blockDim.x: whole warps (the launcher's), lanes of one slot 32 / per.
#pragma unroll
    for (int e = 0; e < VEC; ++e)
        for (int o = 16; o >= per; o >>= 1) {
            s[e] += __shfl_xor_sync(0xffffffffu, s[e], o);
            q[e] += __shfl_xor_sync(0xffffffffu, q[e], o);
        }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    if (lane < per)
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            red[(warp * 2) * C + c + e] = s[e];
            red[(warp * 2 + 1) * C + c + e] = q[e];
        }
    __syncthreads();
    for (int t = threadIdx.x; t < 2 * C; t += blockDim.x) {
        float v = 0.f;
        for (int w = 0; w < warps; ++w) v += red[w * 2 * C + t];
        part[(int64_t(n) * chunks + chunk) * 2 * C + t] = v;
    }
}

// y = act(GroupNorm(x)) in channels-last from the partial sums residual_stats_kernel left
// (part [N, chunks, 2, C]): block (chunk j, sample n) first adds up its sample's sums (chunks in
// order, then a group's channels), then streams its positions [j * P, (j + 1) * P) through, a thread
// per VEC channels. With x2, the input is the channel concatenation of x [N, HW, C1] (sums part)
// and x2 [N, HW, C - C1] (sums part2, chunks2 of them), never written (C1 % VEC == 0). The variance
// is the channels' own plus the spread of their means (float). With bias (no x2), the norm is of
// x + bias[n, c] (bias[n, c] at bias + n * ldb + c; a residual block's time embedding): it shifts
// the channel means, and joins the mean subtracted while streaming.
template <typename T, int VEC>
__global__ void __launch_bounds__(256, 4) group_norm_apply_kernel(const T* __restrict__ x, const float* __restrict__ part, int chunks,
                                        const T* __restrict__ x2, const float* __restrict__ part2, int chunks2,
                                        const T* __restrict__ bias, int64_t ldb,
                                        const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                                        int C, int C1, int HW, int groups, float eps, bool silu, int P) {
    extern __shared__ float tot[];  // [2][C] sums, then [groups] means and [groups] 1/sqrt(var + eps)
    const int chunk = blockIdx.x, n = blockIdx.y;
    for (int t = threadIdx.x; t < 2 * C; t += blockDim.x) {
        const int k = t / C, ch = t % C;
        const bool first = ch < C1;
        const int w = first ? C1 : C - C1, cw = first ? ch : ch - C1, m = first ? chunks : chunks2;
        const float* src = (first ? part : part2) + int64_t(n) * m * 2 * w + k * w + cw;
        float v = 0.f;
        for (int j = 0; j < m; ++j) v += src[int64_t(j) * 2 * w];
        tot[t] = v;
    }
    __syncthreads();
    const T* brow = bias ? bias + int64_t(n) * ldb : nullptr;
    float* mean = tot + 2 * C;
    float* rstd = mean + groups;
    const int cg = C / groups;
    // A group's variance as its channels' own (sum of squares less sum * channel mean: the
    // cancellation is against a channel's mean, not the group's) plus the spread of the channel
    // means (+ bias) about the group's: the bias never enters a difference of large numbers.
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {
        float s = 0.f;
        for (int ch = g * cg; ch < (g + 1) * cg; ++ch) s += tot[ch] + (brow ? float(HW) * to_float(brow[ch]) : 0.f);
        const float count = float(cg) * float(HW), mu = s / count;
        float v = 0.f;
        for (int ch = g * cg; ch < (g + 1) * cg; ++ch) {
            const float m = tot[ch] / float(HW), d = m + (brow ? to_float(brow[ch]) : 0.f) - mu;
            v += fmaxf(tot[C + ch] - tot[ch] * m, 0.f) + float(HW) * d * d;
        }
        mean[g] = mu;
        rstd[g] = rsqrtf(v / count + eps);
    }
    __syncthreads();
    const int per = C / VEC, slot = threadIdx.x % per, rows = blockDim.x / per;
    if (int(threadIdx.x) >= rows * per) return;
    const int c = slot * VEC, end = min(HW, (chunk + 1) * P);
    const bool first = c < C1;
    const int w = first ? C1 : C - C1;
    const T* src = (first ? x + c : x2 + (c - C1)) + int64_t(n) * HW * w;
    T* dst = y + int64_t(n) * HW * C + c;
    // y = (x - mean) * (rstd * gamma) + beta: three values a channel held.
    float sc[VEC], be[VEC], mu[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
        sc[e] = rstd[(c + e) / cg] * to_float(gamma[c + e]);
        be[e] = to_float(beta[c + e]);
        mu[e] = mean[(c + e) / cg] - (brow ? to_float(brow[c + e]) : 0.f);
    }
#pragma unroll 4
    for (int p = chunk * P + int(threadIdx.x) / per; p < end; p += rows) {
        const Vec<T, VEC> in = *reinterpret_cast<const Vec<T, VEC>*>(src + int64_t(p) * w);
        Vec<T, VEC> out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            const float t = (to_float(in.a[e]) - mu[e]) * sc[e] + be[e];
            out.a[e] = from_float<T>(silu ? t / (1.f + __expf(-t)) : t);
        }
        *reinterpret_cast<Vec<T, VEC>*>(dst + int64_t(p) * C) = out;
    }
}

// Nearest-neighbour upsampling by 2 of x [N, H, W, C] (channels-last) into y [N, 2H, 2W, C]: a
// thread per VEC channels of an output position (VEC dividing C, the pointers aligned to it).
template <typename T, int VEC>
__global__ void upsample2_nhwc_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t nvec, int C, int H, int W) {
    const int per = C / VEC, W2 = 2 * W, H2 = 2 * H;
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < nvec; k += int64_t(gridDim.x) * blockDim.x) {
        const int cv = int(k % per);
        int64_t p = k / per;  // output position n * H2 * W2 + i * W2 + j
        const int j = int(p % W2);
        p /= W2;
        const int i = int(p % H2);
        const int64_t n = p / H2;
        const int64_t src = ((n * H + i / 2) * W + j / 2) * C + int64_t(cv) * VEC;
        *reinterpret_cast<Vec<T, VEC>*>(y + k * VEC) = *reinterpret_cast<const Vec<T, VEC>*>(x + src);
    }
}

// Self-attention over a short sequence (the UNet's attention at 7x7: 49 positions, heads of 16
// channels), for inference: softmax(q k^T / sqrt(D)) v of each (sample, head). qkv is a
// channels-last 1x1 convolution's output, [B, L, 3, heads, D] in memory; out [B, L, heads, D]
// (channels-last [B, heads * D, H, W], what the output projection reads). One block per (sample,
// head) holds the head's keys and values in shared memory as float; a thread per query takes the
// scores key by key with a running maximum and sum (the output so far rescaled when the maximum
// grows), all in float. LibTorch's fused float32 kernel (cutlass, 64x64 tiles) took 72 us a call
// at batch 512 where the data is 25 MB; its output also needed a copy back to channels-last.
// Preconditions (small_attention checks them): D % VEC == 0, qkv and out aligned to VEC elements,
// 2 * L * D floats within 48 KB.
template <typename T, int D, int VEC>
__global__ void small_attention_kernel(const T* __restrict__ qkv, T* __restrict__ out, int L, int heads, float scale) {
    extern __shared__ float kv[];  // keys [L][D], then values [L][D]
    float* ks = kv;
    float* vs = kv + L * D;
    const int b = blockIdx.x / heads, h = blockIdx.x % heads;
    const int C = heads * D;
    const T* base = qkv + int64_t(b) * L * 3 * C + h * D;
    for (int k = threadIdx.x; k < L * D / VEC; k += blockDim.x) {
        const int j = k / (D / VEC), e = (k % (D / VEC)) * VEC;
        const Vec<T, VEC> kj = *reinterpret_cast<const Vec<T, VEC>*>(base + int64_t(j) * 3 * C + C + e);
        const Vec<T, VEC> vj = *reinterpret_cast<const Vec<T, VEC>*>(base + int64_t(j) * 3 * C + 2 * C + e);
#pragma unroll
        for (int u = 0; u < VEC; ++u) {
            ks[j * D + e + u] = to_float(kj.a[u]);
            vs[j * D + e + u] = to_float(vj.a[u]);
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < L; i += blockDim.x) {
        float q[D], o[D];
        const T* qi = base + int64_t(i) * 3 * C;
#pragma unroll
        for (int e = 0; e < D; e += VEC) {
            const Vec<T, VEC> qv = *reinterpret_cast<const Vec<T, VEC>*>(qi + e);
#pragma unroll
            for (int u = 0; u < VEC; ++u) {
                q[e + u] = to_float(qv.a[u]) * scale;
                o[e + u] = 0.f;
            }
        }
        float m = -INFINITY, s = 0.f;
        for (int j = 0; j < L; ++j) {
            const float4* kj = reinterpret_cast<const float4*>(ks + j * D);
            float dot = 0.f;
#pragma unroll
            for (int e = 0; e < D / 4; ++e) {
                const float4 k4 = kj[e];
                dot += q[4 * e] * k4.x + q[4 * e + 1] * k4.y + q[4 * e + 2] * k4.z + q[4 * e + 3] * k4.w;
            }
            if (dot > m) {  // a new maximum: rescale what was summed under the old one
                const float c = expf(m - dot);
                s *= c;
#pragma unroll
                for (int e = 0; e < D; ++e) o[e] *= c;
                m = dot;
            }
            const float p = expf(dot - m);
            s += p;
            const float4* vj = reinterpret_cast<const float4*>(vs + j * D);
#pragma unroll
            for (int e = 0; e < D / 4; ++e) {
                const float4 v4 = vj[e];
                o[4 * e] += p * v4.x;
                o[4 * e + 1] += p * v4.y;
                o[4 * e + 2] += p * v4.z;
                o[4 * e + 3] += p * v4.w;
            }
        }
        const float inv = 1.f / s;
        T* oi = out + (int64_t(b) * L + i) * C + h * D;
#pragma unroll
        for (int e = 0; e < D; e += VEC) {
            Vec<T, VEC> ov;
#pragma unroll
            for (int u = 0; u < VEC; ++u) ov.a[u] = from_float<T>(o[e + u] * inv);
            *reinterpret_cast<Vec<T, VEC>*>(oi + e) = ov;
        }
    }
}

// The UNet's first convolution on a one-channel image, for inference: y[n, i, j, c] = bias[c] +
// the 3x3 neighbourhood of x[n, 0] (zero padding) weighted by w[c, 0], written channels-last with
// the bias in the same pass. cuDNN ran it in the plain layout (one input channel), then a
// conversion to channels-last and a bias pass followed: three passes over the 32-channel output.
// A thread per VEC output channels of a position; the weights and the bias (Cout * 10 values) in
// shared memory as float. x [N, H, W] (its one channel), w [Cout, 9], bias [Cout], y [N, H, W, Cout].
template <typename T, int VEC>
__global__ void first_conv3x3_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                                     T* __restrict__ y, int64_t nvec, int Cout, int H, int W) {
    extern __shared__ float wb[];  // [Cout][9] weights, then [Cout] biases
    for (int i = threadIdx.x; i < Cout * 10; i += blockDim.x) wb[i] = to_float(i < Cout * 9 ? w[i] : bias[i - Cout * 9]);
    __syncthreads();
    const int per = Cout / VEC;
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < nvec; k += int64_t(gridDim.x) * blockDim.x) {
        const int c0 = int(k % per) * VEC;
        const int64_t p = k / per;  // n * H * W + i * W + j
        const int j = int(p % W), i = int((p / W) % H);
        *reinterpret_cast<Vec<T, VEC>*>(y + k * VEC) =
            first_conv_value<T, VEC>(x + (p - int64_t(i) * W - j), wb, Cout, H, W, i, j, c0);
    }
}

// Column sums (training: a convolution's bias gradient, GroupNorm's gamma and beta gradients):
// rows [r0, r1) of x (row stride ld floats) summed over each of C columns into result[c], by all
// of a block's threads: thread t takes the VEC columns from (t % (C / VEC)) * VEC and every
// lanes-th row (lanes = blockDim.x / (C / VEC)); `shared` holds lanes * C floats. The order of
// the additions depends on the shapes only, so the sums are the same in every run. With
// `coherent`, loads bypass L1 (values other blocks wrote in this kernel).
template <int VEC, bool coherent>
__device__ void block_column_sum(const float* x, int64_t r0, int64_t r1, int C, int64_t ld, float* shared,
                                 float* result) {
    const int cols = C / VEC, lanes = blockDim.x / cols;
    const int lane = threadIdx.x / cols, cv = threadIdx.x % cols;
    if (lane < lanes) {
        float acc[VEC] = {};
#pragma unroll 4
        for (int64_t r = r0 + lane; r < r1; r += lanes) {
            const auto* at = reinterpret_cast<const Vec<float, VEC>*>(x + r * ld + cv * VEC);
            Vec<float, VEC> v;
            if constexpr (coherent) {
                if constexpr (VEC == 4) {
                    const float4 f = __ldcg(reinterpret_cast<const float4*>(at));
                    v.a[0] = f.x, v.a[1] = f.y, v.a[2] = f.z, v.a[3] = f.w;
                } else {
#pragma unroll
                    for (int e = 0; e < VEC; ++e) v.a[e] = __ldcg(at->a + e);
                }
            } else {
                v = *at;
            }
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[e] += v.a[e];
        }
#pragma unroll
        for (int e = 0; e < VEC; ++e) shared[lane * C + cv * VEC + e] = acc[e];
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.f;
        for (int l = 0; l < lanes; ++l) s += shared[l * C + c];
        result[c] = s;
    }
    __syncthreads();
}

constexpr int kColumnThreads = 256, kColumnShared = 1024;  // kColumnShared >= lanes * C

// out[b, c] = the sum over m < M of x[b * bs + m * ld + c], for b = blockIdx.y: gridDim.x blocks of
// `rows` rows each leave their sums in partial[b, block, :], and the last of them to finish adds
// those in block order (so the result does not depend on which finished last); counter[b] (zero
// at the start) counts the finished blocks. One block: it writes out directly.
template <int VEC>
__global__ void __launch_bounds__(kColumnThreads) column_sum_kernel(const float* __restrict__ x, float* out,
                                                                    float* partial, unsigned* counter, int64_t M, int C,
                                                                    int64_t ld, int64_t bs, int64_t rows) {
    __shared__ float shared[kColumnShared];
    __shared__ bool last;
    const int b = blockIdx.y, P = gridDim.x, p = blockIdx.x;
    const int64_t r0 = p * rows, r1 = r0 + rows < M ? r0 + rows : M;
    if (P == 1) {
        block_column_sum<VEC, false>(x + b * bs, r0, r1, C, ld, shared, out + int64_t(b) * C);
        return;
    }
    float* part = partial + int64_t(b) * P * C;
    block_column_sum<VEC, false>(x + b * bs, r0, r1, C, ld, shared, part + int64_t(p) * C);
    __threadfence();  // this block's partial sums are visible before it counts itself done
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter + b, 1u) == unsigned(P - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    block_column_sum<VEC, true>(part, 0, P, C, C, shared, out + int64_t(b) * C);
}

// The widest vector (at most 16 bytes) that divides `run` and to which every pointer is aligned;
// calls go(std::integral_constant<int, VEC>).
template <typename T, typename Go>
void with_vector(int64_t run, std::initializer_list<const void*> ptrs, Go&& go) {
    auto fits = [&](int vec) {
        if (run % vec != 0) return false;
        for (const void* p : ptrs)
            if (p && !aligned(p, vec * sizeof(T))) return false;
        return true;
    };
    constexpr int widest = 16 / sizeof(T);
    if (fits(widest)) go(std::integral_constant<int, widest>());
    else if (fits(widest / 2)) go(std::integral_constant<int, widest / 2>());
    else if (fits(2)) go(std::integral_constant<int, 2>());
    else go(std::integral_constant<int, 1>());
}

// Whether the NHWC GroupNorm kernels may take several groups a block (the forward at inference and
// with statistics, the training backward); DLAB_GN_GPB=1: one group a block everywhere (for comparisons).
bool several_groups_a_block() {
    static const bool on = !(std::getenv("DLAB_GN_GPB") && std::strcmp(std::getenv("DLAB_GN_GPB"), "1") == 0);
    return on;
}

// A grid-stride launch's blocks for `work` items of 256 threads.
int grid_for(int64_t work) {
    const int64_t blocks = (work + 255) / 256;
    return int(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

template <typename T>
int launch_residual(const void* a, const void* r, const void* r2, const void* bias, void* y, int64_t total, int C,
                    int HW, bool nhwc, cudaStream_t stream) {
    with_vector<T>(nhwc ? C : HW, {a, r, r2, y}, [&](auto vec) {
        constexpr int VEC = decltype(vec)::value;
        const int64_t nvec = total / VEC;
        residual_add_kernel<T, VEC><<<grid_for(nvec), 256, 0, stream>>>(
            static_cast<const T*>(a), static_cast<const T*>(r), static_cast<const T*>(r2), static_cast<const T*>(bias),
            static_cast<T*>(y), nvec, C, HW, nhwc);
    });
    return static_cast<int>(cudaGetLastError());
}

// Positions a chunk of the streaming kernels (residual_stats_kernel, group_norm_apply_kernel): `rows`
// positions at a time, up to `most` times, fewer where the chunks would not give 2 blocks an SM.
// Long chunks amortise a block's fixed part (the sums' epilogue; the apply kernel's prologue, which
// adds up the partial sums: with 4 rows of positions a chunk it ran at 2.2-2.5 TB/s against the residual
// kernel's ~3.9).
// The most rows of positions a chunk of each kernel; DLAB_GN_STATS_ITERS and DLAB_GN_APPLY_ITERS
// (1 to 64) set them, for comparisons.
int chunk_rows(const char* name, int fallback) {
    const char* env = std::getenv(name);
    const int v = env ? std::atoi(env) : 0;
    return v >= 1 && v <= 64 ? v : fallback;
}
int stats_rows() {
    static const int v = chunk_rows("DLAB_GN_STATS_ITERS", 8);
    return v;
}
int apply_rows() {
    static const int v = chunk_rows("DLAB_GN_APPLY_ITERS", 16);
    return v;
}
int positions_a_chunk(int N, int HW, int rows, int most) {
    static const int sms = [] {
        int device = 0, count = 132;
        if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
            count = 132;
        return count;
    }();
    int iters = most;
    while (iters > 1 && int64_t(N) * ((HW + rows * iters - 1) / (rows * iters)) < 2 * sms) iters /= 2;
    return rows * iters;
}

// residual_stats_kernel's vector (16 bytes) and threads a block for C channels; 0 where it cannot
// take them (C / VEC not a power of 2 at most 32).
template <typename T> int stats_vec(int C) {
    constexpr int VEC = 16 / sizeof(T);
    const int per = C / VEC;
    return C % VEC == 0 && per >= 1 && per <= 32 && (per & (per - 1)) == 0 ? VEC : 0;
}

// y null: the sums of a alone (r, r2 and bias must be null too), nothing written but part. w2 > 0:
// the upsampling convolution's phases (MODE 2; r and r2 null; HW = 4 H w2 output positions).
template <typename T>
int launch_residual_stats(const void* a, const void* r, const void* r2, const void* bias, void* y, float* part, int N,
                          int C, int HW, cudaStream_t stream, int w2 = 0) {
    constexpr int VEC = 16 / sizeof(T);
    if (stats_vec<T>(C) != VEC || (!y && (r || r2 || bias || w2))) return -1;
    if (w2 && (r || r2 || w2 < 1 || HW % (4 * w2) != 0)) return -1;
    for (const void* ptr : std::initializer_list<const void*>{a, r, r2, y})
        if (ptr && !aligned(ptr, 16)) return -1;
    const int threads = 256, P = positions_a_chunk(N, HW, threads / (C / VEC), stats_rows());
    const dim3 grid((HW + P - 1) / P, N);
    const size_t smem = (threads / 32) * 2 * C * sizeof(float);
    const T* at = static_cast<const T*>(a);
    const T* bt = static_cast<const T*>(bias);
    if (!y)
        residual_stats_kernel<T, VEC, 1><<<grid, threads, smem, stream>>>(at, nullptr, nullptr, nullptr, nullptr, part, C, HW, P);
    else if (w2)
        residual_stats_kernel<T, VEC, 2><<<grid, threads, smem, stream>>>(at, nullptr, nullptr, bt, static_cast<T*>(y), part,
                                                                         C, HW, P, w2);
    else
        residual_stats_kernel<T, VEC><<<grid, threads, smem, stream>>>(at, static_cast<const T*>(r), static_cast<const T*>(r2),
                                                                     bt, static_cast<T*>(y), part, C, HW, P);
    return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_group_norm_apply(const void* x, const float* part, int chunks, const void* x2, const float* part2, int chunks2,
                            const void* bias, int64_t ldb, const void* gamma, const void* beta, void* y, int N, int C,
                            int C1, int HW, int groups, float eps, bool silu, cudaStream_t stream) {
    if (bias && x2) return -1;
    int err = -1;
    with_vector<T>(x2 ? gcd(C1, C - C1) : C, {x, x2, y}, [&](auto vec) {
        constexpr int VEC = decltype(vec)::value;
        const int per = C / VEC;
        if (per > 256) return;
        const int rows = 256 / per, P = positions_a_chunk(N, HW, rows, apply_rows());
        const dim3 grid((HW + P - 1) / P, N);
        group_norm_apply_kernel<T, VEC><<<grid, rows * per, (2 * C + 2 * groups) * sizeof(float), stream>>>(
            static_cast<const T*>(x), part, chunks, static_cast<const T*>(x2), part2, chunks2, static_cast<const T*>(bias),
            ldb > 0 ? ldb : C, static_cast<const T*>(gamma),
            static_cast<const T*>(beta), static_cast<T*>(y), C, x2 ? C1 : C, HW, groups, eps, silu, P);
        err = static_cast<int>(cudaGetLastError());
    });
    return err;
}

template <typename T>
int launch_upsample2(const void* x, void* y, int N, int C, int H, int W, cudaStream_t stream) {
    with_vector<T>(C, {x, y}, [&](auto vec) {
        constexpr int VEC = decltype(vec)::value;
        const int64_t nvec = int64_t(N) * 4 * H * W * C / VEC;
        upsample2_nhwc_kernel<T, VEC><<<grid_for(nvec), 256, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                                          nvec, C, H, W);
    });
    return static_cast<int>(cudaGetLastError());
}

template <typename T, int D>
int launch_small_attention(const void* qkv, void* out, int B, int L, int heads, cudaStream_t stream) {
    constexpr int VEC = 16 / sizeof(T) < D ? 16 / sizeof(T) : D;
    const int threads = L <= 32 ? 32 : L <= 64 ? 64 : L <= 96 ? 96 : 128;
    small_attention_kernel<T, D, VEC><<<B * heads, threads, 2 * L * D * sizeof(float), stream>>>(
        static_cast<const T*>(qkv), static_cast<T*>(out), L, heads, 1.f / sqrtf(float(D)));
    return static_cast<int>(cudaGetLastError());
}

template <typename T>
int small_attention_typed(const void* qkv, void* out, int B, int L, int heads, int D, cudaStream_t stream) {
    switch (D) {
    case 8: return launch_small_attention<T, 8>(qkv, out, B, L, heads, stream);
    case 16: return launch_small_attention<T, 16>(qkv, out, B, L, heads, stream);
    case 32: return launch_small_attention<T, 32>(qkv, out, B, L, heads, stream);
    case 64: return launch_small_attention<T, 64>(qkv, out, B, L, heads, stream);
    default: return -1;
    }
}

template <typename T>
int launch_first_conv(const void* x, const void* w, const void* bias, void* y, int N, int Cout, int H, int W,
                      cudaStream_t stream) {
    with_vector<T>(Cout, {y}, [&](auto vec) {
        constexpr int VEC = decltype(vec)::value;
        const int64_t nvec = int64_t(N) * H * W * Cout / VEC;
        first_conv3x3_kernel<T, VEC><<<grid_for(nvec), 256, Cout * 10 * sizeof(float), stream>>>(
            static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(y), nvec, Cout,
            H, W);
    });
    return static_cast<int>(cudaGetLastError());
}

// Kernel 2 with the widest vector (at most 16 bytes: 4 floats, 8 halves) that the layout and the
// pointers allow.
template <typename T>
int launch_smem(const void* x, const void* bias, const void* gamma, const void* beta, void* y, int N,
                int C, int HW, int groups, float eps, bool silu, bool nhwc, float* stats, cudaStream_t stream,
                int64_t ldb, const void* x2 = nullptr, int C1 = 0) {
    const int count = (C / groups) * HW;
    // A concatenation's vectors must not straddle its two parts.
    const int unit = nhwc ? (x2 ? gcd(C / groups, C1) : C / groups) : HW;
    auto go = [&](auto vec) {
        constexpr int VEC = decltype(vec)::value;
        // NHWC inference: a block takes gpb groups, so that a position's channels it reads span up
        // to 64 bytes (a group of 4 float channels is 16 bytes: half of each 32-byte sector read
        // would belong to another block), while they fit in shared memory and there are blocks
        // enough to fill the GPU (at batch 1, fewer and longer blocks were slower; H200: batch-256
        // pass 3.94 -> 3.80 ms, docs/eval/residual-h200.log).
        const bool several = several_groups_a_block();
        int gpb = 1;
        // Training (stats) at batch 128 has fewer blocks to spare (N * groups = 1024 at 8 groups):
        // it takes 2 groups a block where 512 blocks remain.
        if (several && nhwc && !x2) {
            const int cg = C / groups;
            while (groups % (2 * gpb) == 0 && cg * gpb * int(sizeof(T)) < (stats ? 32 : 64) && 2 * gpb * count <= kSharedFloats &&
                   cg * 2 * gpb / VEC <= 32 && N * groups / (2 * gpb) >= (stats ? 512 : 1024))
                gpb *= 2;
            const int per = cg * gpb / VEC;
            if ((per & (per - 1)) != 0) gpb = 1;
        }
        const int nvec = gpb * count / VEC;
        const int threads = nvec >= 2048 ? 512 : nvec >= 256 ? 256 : 128;
        group_norm_act_smem_kernel<T, VEC><<<N * groups / gpb, threads, gpb * count * sizeof(float), stream>>>(
            static_cast<const T*>(x), static_cast<const T*>(bias), static_cast<const T*>(gamma),
            static_cast<const T*>(beta), static_cast<T*>(y), C, HW, groups, eps, silu, nhwc, stats, ldb,
            static_cast<const T*>(x2), C1, gpb);
    };
    with_vector<T>(unit, {x, y, x2}, go);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace

namespace dlab::cuda_kernels {

// The largest group (C / groups * HW values) that kernel 2, and so the half types, can take.
int group_norm_smem_capacity() { return kSharedFloats; }

// x and y [N, C, HW], or [N, HW, C] with `nhwc`, of `dtype` 0 (float), 1 (__half) or 2
// (__nv_bfloat16), as are bias, gamma and beta. `kernel` 1: three passes over global memory
// (group_norm_act_kernel, float only); 2: one read into shared memory (group_norm_act_smem_kernel)
// where the group fits, else 1. Half types need kernel 2 and a group that fits (else -1, nothing
// launched). With `stats` (float [N * groups, 2], training) each (sample, group) also leaves its
// mean and 1/sqrt(var + eps) there for group_norm_act_backward. bias[n, c] is at bias + n * ldb + c
// (ldb 0: C; the UNet's time-embedding projections of all its blocks come from one matrix
// product, a block's bias a column slice of it). Launches on `stream` (a cudaStream_t); returns the
// launch's cudaError_t as an int (0: success).
int group_norm_act(const void* xv, const void* biasv, const void* gammav, const void* betav, void* yv,
                   int dtype, int N, int C, int HW, int groups, float eps, bool silu, bool nhwc,
                   int kernel, float* stats, void* stream, int64_t ldb) {
    if (ldb <= 0) ldb = C;
    const int count = (C / groups) * HW;
    const auto cs = static_cast<cudaStream_t>(stream);
    const bool smem = count <= kSharedFloats;
    if (dtype == 1 || dtype == 2) {
        if (!smem) return -1;
        return dtype == 1 ? launch_smem<__half>(xv, biasv, gammav, betav, yv, N, C, HW, groups, eps, silu, nhwc, stats, cs, ldb)
                          : launch_smem<__nv_bfloat16>(xv, biasv, gammav, betav, yv, N, C, HW, groups, eps, silu, nhwc, stats, cs, ldb);
    }
    if (kernel == 2 && smem)
        return launch_smem<float>(xv, biasv, gammav, betav, yv, N, C, HW, groups, eps, silu, nhwc, stats, cs, ldb);
    const float* x = static_cast<const float*>(xv);
    const float* bias = static_cast<const float*>(biasv);
    const float* gamma = static_cast<const float*>(gammav);
    const float* beta = static_cast<const float*>(betav);
    float* y = static_cast<float*>(yv);
    const int threads = count >= 8192 ? 512 : count >= 1024 ? 256 : 128;
    group_norm_act_kernel<<<N * groups, threads, 0, cs>>>(
        x, bias, gamma, beta, y, C, HW, groups, eps, silu, nhwc, stats, ldb);
    return static_cast<int>(cudaGetLastError());
}

// x1 [N, HW, C1] and x2 [N, HW, C - C1] (channels-last) of `dtype` (as group_norm_act), their
// channel concatenation normalised into y [N, HW, C] by kernel 2, without the concatenation ever
// being written; -1 (nothing launched) where a group does not fit kernel 2's shared memory.
int concat_group_norm_act(const void* x1, const void* x2, const void* gammav, const void* betav, void* yv, int dtype,
                          int N, int C1, int C, int HW, int groups, float eps, bool silu, void* stream) {
    if ((C / groups) * HW > kSharedFloats) return -1;
    const auto cs = static_cast<cudaStream_t>(stream);
    return dtype == 1   ? launch_smem<__half>(x1, nullptr, gammav, betav, yv, N, C, HW, groups, eps, silu, true, nullptr, cs, C, x2, C1)
           : dtype == 2 ? launch_smem<__nv_bfloat16>(x1, nullptr, gammav, betav, yv, N, C, HW, groups, eps, silu, true, nullptr, cs, C, x2, C1)
                        : launch_smem<float>(x1, nullptr, gammav, betav, yv, N, C, HW, groups, eps, silu, true, nullptr, cs, C, x2, C1);
}

// y = a + r + r2 + bias[c] (residual_add_kernel) over `total` values of `dtype` (as group_norm_act)
// in one layout; r, r2 and bias [C] optional (null); y may be a. Returns the launch's cudaError_t.
int residual_add(const void* a, const void* r, const void* r2, const void* bias, void* y, int dtype, int64_t total,
                 int C, int HW, bool nhwc, void* stream) {
    const auto cs = static_cast<cudaStream_t>(stream);
    return dtype == 1   ? launch_residual<__half>(a, r, r2, bias, y, total, C, HW, nhwc, cs)
           : dtype == 2 ? launch_residual<__nv_bfloat16>(a, r, r2, bias, y, total, C, HW, nhwc, cs)
                        : launch_residual<float>(a, r, r2, bias, y, total, C, HW, nhwc, cs);
}

// The number of chunks (> 0) of the partial sums residual_add_stats leaves for y [N, HW, C] of
// `dtype` (its `part` is float [N, chunks, 2, C]); 0 where it cannot take C.
int residual_stats_chunks(int dtype, int N, int C, int HW) {
    const int vec = dtype == 0 ? stats_vec<float>(C) : stats_vec<__half>(C);
    if (vec == 0 || N < 1 || HW < 1) return 0;
    const int P = positions_a_chunk(N, HW, 256 / (C / vec), stats_rows());
    return (HW + P - 1) / P;
}

// y = a + r + r2 + bias[c] in channels-last ([N, HW, C]; r, r2, bias optional, y may be a) by
// residual_stats_kernel, with y's per-channel partial sums in part (residual_stats_chunks). -1
// (nothing launched) where it cannot take C or a pointer is not 16-byte aligned.
int residual_add_stats(const void* a, const void* r, const void* r2, const void* bias, void* y, float* part, int dtype,
                       int N, int C, int HW, void* stream) {
    const auto cs = static_cast<cudaStream_t>(stream);
    return dtype == 1   ? launch_residual_stats<__half>(a, r, r2, bias, y, part, N, C, HW, cs)
           : dtype == 2 ? launch_residual_stats<__nv_bfloat16>(a, r, r2, bias, y, part, N, C, HW, cs)
                        : launch_residual_stats<float>(a, r, r2, bias, y, part, N, C, HW, cs);
}

// y [N, 2H, 2W, C] (channels-last) = the nearest-neighbour upsampling by 2 of a map [N, H, W, Cin]
// followed by a 3x3 convolution (padding 1) and its bias, from z [N, H + 1, W + 1, 4C]: that map's
// 2x2 convolution (padding 1) with the four phases' weights (fused_ops.cpp), the phase (u, v) in
// channels [(2u + v) C, (2u + v + 1) C); y's per-channel partial sums in part (residual_stats_chunks
// of N, C, 4 H W), as residual_add_stats. -1 (nothing launched) where it cannot take C or a pointer
// is not 16-byte aligned.
int subpixel_stats(const void* z, const void* bias, void* y, float* part, int dtype, int N, int C, int H, int W,
                   void* stream) {
    const auto cs = static_cast<cudaStream_t>(stream);
    const int HW = 4 * H * W;
    return dtype == 1   ? launch_residual_stats<__half>(z, nullptr, nullptr, bias, y, part, N, C, HW, cs, W)
           : dtype == 2 ? launch_residual_stats<__nv_bfloat16>(z, nullptr, nullptr, bias, y, part, N, C, HW, cs, W)
                        : launch_residual_stats<float>(z, nullptr, nullptr, bias, y, part, N, C, HW, cs, W);
}

// The UNet's first convolution (first_conv3x3's) by residual_stats_kernel, with y's per-channel
// partial sums in part (residual_stats_chunks of N, Cout, H W). -1 (nothing launched) where it
// cannot take Cout or y is not 16-byte aligned.
int first_conv3x3_stats(const void* x, const void* w, const void* bias, void* y, float* part, int dtype, int N, int Cout,
                        int H, int W, void* stream) {
    const auto cs = static_cast<cudaStream_t>(stream);
    auto go = [&](auto tag) {
        using T = decltype(tag);
        constexpr int VEC = 16 / sizeof(T);
        if (stats_vec<T>(Cout) != VEC || !aligned(y, 16)) return -1;
        const int threads = 256, HW = H * W, P = positions_a_chunk(N, HW, threads / (Cout / VEC), stats_rows());
        const dim3 grid((HW + P - 1) / P, N);
        const size_t smem = ((threads / 32) * 2 * Cout + Cout * 10) * sizeof(float);
        residual_stats_kernel<T, VEC, 3><<<grid, threads, smem, cs>>>(static_cast<const T*>(x), static_cast<const T*>(w), nullptr,
                                                                     static_cast<const T*>(bias), static_cast<T*>(y), part, Cout,
                                                                     HW, P, W);
        return static_cast<int>(cudaGetLastError());
    };
    return dtype == 1 ? go(__half()) : dtype == 2 ? go(__nv_bfloat16()) : go(float());
}

// The per-channel partial sums of x [N, HW, C] (channels-last, `dtype`) alone, as residual_add_stats
// leaves them for its output (part: [N, residual_stats_chunks, 2, C]), by residual_stats_kernel
// reading x once and writing nothing else. -1 (nothing launched) where it cannot take C or x is
// not 16-byte aligned.
int channel_sums(const void* x, float* part, int dtype, int N, int C, int HW, void* stream) {
    return residual_add_stats(x, nullptr, nullptr, nullptr, nullptr, part, dtype, N, C, HW, stream);
}

// y [N, HW, C] = act(GroupNorm(x + bias)) from x's partial sums (part: [N, chunks, 2, C] as
// residual_add_stats or channel_sums left them) by group_norm_apply_kernel; bias (optional, not
// with x2) [N, C] with row stride ldb (0: C); with x2, of the concatenation of x [N, HW, C1] and
// x2 [N, HW, C - C1] (sums part2, chunks2). -1 (nothing launched) where a vector cannot be found
// (pointers not aligned) or C is too wide.
int group_norm_apply(const void* x, const float* part, int chunks, const void* x2, const float* part2, int chunks2,
                     const void* bias, int64_t ldb, const void* gamma, const void* beta, void* y, int dtype, int N, int C,
                     int C1, int HW, int groups, float eps, bool silu, void* stream) {
    const auto cs = static_cast<cudaStream_t>(stream);
    return dtype == 1 ? launch_group_norm_apply<__half>(x, part, chunks, x2, part2, chunks2, bias, ldb, gamma, beta, y, N, C,
                                                        C1, HW, groups, eps, silu, cs)
           : dtype == 2 ? launch_group_norm_apply<__nv_bfloat16>(x, part, chunks, x2, part2, chunks2, bias, ldb, gamma, beta,
                                                                 y, N, C, C1, HW, groups, eps, silu, cs)
                        : launch_group_norm_apply<float>(x, part, chunks, x2, part2, chunks2, bias, ldb, gamma, beta, y, N,
                                                         C, C1, HW, groups, eps, silu, cs);
}

// Whether small_attention takes a head of D channels over L positions: D 8, 16, 32 or 64 and the
// head's keys and values (2 * L * D floats) within 48 KB of shared memory.
bool small_attention_fits(int L, int D) {
    return (D == 8 || D == 16 || D == 32 || D == 64) && L >= 1 && 2 * L * D <= kSharedFloats;
}

// softmax(q k^T / sqrt(D)) v of each (sample, head) by small_attention_kernel: qkv [B, L, 3, heads,
// D] and out [B, L, heads, D] of `dtype` (as group_norm_act), both 16-byte aligned. -1 (nothing
// launched) where small_attention_fits(L, D) is false or a pointer is not aligned.
int small_attention(const void* qkv, void* out, int dtype, int B, int L, int heads, int D, void* stream) {
    if (!small_attention_fits(L, D) || !aligned(qkv, 16) || !aligned(out, 16)) return -1;
    const auto cs = static_cast<cudaStream_t>(stream);
    return dtype == 1   ? small_attention_typed<__half>(qkv, out, B, L, heads, D, cs)
           : dtype == 2 ? small_attention_typed<__nv_bfloat16>(qkv, out, B, L, heads, D, cs)
                        : small_attention_typed<float>(qkv, out, B, L, heads, D, cs);
}

// The 3x3 convolution (padding 1, stride 1) of a one-channel x [N, H, W] by w [Cout, 9] plus bias
// [Cout] into channels-last y [N, H, W, Cout] (first_conv3x3_kernel), all of `dtype` (as
// group_norm_act); -1 (nothing launched) where the weights and biases exceed 48 KB.
int first_conv3x3(const void* x, const void* w, const void* bias, void* y, int dtype, int N, int Cout, int H, int W,
                  void* stream) {
    if (Cout < 1 || Cout * 10 > kSharedFloats) return -1;
    const auto cs = static_cast<cudaStream_t>(stream);
    return dtype == 1   ? launch_first_conv<__half>(x, w, bias, y, N, Cout, H, W, cs)
           : dtype == 2 ? launch_first_conv<__nv_bfloat16>(x, w, bias, y, N, Cout, H, W, cs)
                        : launch_first_conv<float>(x, w, bias, y, N, Cout, H, W, cs);
}

// Nearest-neighbour upsampling by 2 of x [N, H, W, C] into y [N, 2H, 2W, C] (channels-last).
int upsample2_nhwc(const void* x, void* y, int dtype, int N, int C, int H, int W, void* stream) {
    const auto cs = static_cast<cudaStream_t>(stream);
    return dtype == 1   ? launch_upsample2<__half>(x, y, N, C, H, W, cs)
           : dtype == 2 ? launch_upsample2<__nv_bfloat16>(x, y, N, C, H, W, cs)
                        : launch_upsample2<float>(x, y, N, C, H, W, cs);
}

// Column sums (column_sum_kernel): out[b, c] = the sum over m < M of x[b * bs + m * ld + c] for
// b < B and c < C, float32, in an order fixed by the shapes. column_sum_blocks(M, C) is the number
// of row blocks P; where P > 1, partial holds B * P * C floats and counter B zeroed unsigned ints.
// Returns -1 (nothing launched) where no vector width fits (C / VEC columns must fit a block),
// else the launch's cudaError_t.
int column_sum_blocks(int64_t M, int C) {
    // About 8192 values a block (32 KB read), at most 1024 blocks (the last block adds their sums).
    const int64_t rows = (8191 + C) / C;
    const int64_t blocks = (M + rows - 1) / rows;
    return int(blocks < 1 ? 1 : blocks > 1024 ? 1024 : blocks);
}
int column_sum(const float* x, float* out, float* partial, unsigned* counter, int B, int64_t M, int C, int64_t ld,
               int64_t bs, void* stream) {
    const int P = column_sum_blocks(M, C);
    const int64_t rows = (M + P - 1) / P;
    int vec = 1;
    for (int v : {4, 2}) {
        if (C % v == 0 && ld % v == 0 && bs % v == 0 && aligned(x, v * sizeof(float))) {
            vec = v;
            break;
        }
    }
    if (C / vec > kColumnThreads || (C / vec) * ((kColumnThreads / (C / vec)) * vec) > kColumnShared || B > 65535)
        return -1;
    const dim3 grid(P, B);
    const auto cs = static_cast<cudaStream_t>(stream);
    if (vec == 4) column_sum_kernel<4><<<grid, kColumnThreads, 0, cs>>>(x, out, partial, counter, M, C, ld, bs, rows);
    else if (vec == 2) column_sum_kernel<2><<<grid, kColumnThreads, 0, cs>>>(x, out, partial, counter, M, C, ld, bs, rows);
    else column_sum_kernel<1><<<grid, kColumnThreads, 0, cs>>>(x, out, partial, counter, M, C, ld, bs, rows);
    return static_cast<int>(cudaGetLastError());
}

// The backward pass of group_norm_act for training (group_norm_act_backward_kernel): float32,
// [N, C, HW] contiguous, or [N, HW, C] with `nhwc` (group_norm_act_backward_nhwc_kernel; x, dy and
// dx all channels-last); stats as group_norm_act left them; dy the gradient of y. Writes dx
// [N, C, HW], dbias [N, C] (unless null: no bias), and dgamma_n, dbeta_n [N, C] (the per-sample
// terms of gamma's and beta's gradients). Returns the launch's cudaError_t as an int.
int group_norm_act_backward(const float* x, const float* bias, const float* gamma, const float* beta,
                            const float* stats, const float* dy, float* dx, float* dbias, float* dgamma_n,
                            float* dbeta_n, int N, int C, int HW, int groups, bool silu, bool nhwc, void* stream) {
    const int cg = C / groups;
    if (nhwc) {
        // The widest vector (4 or 2 channels, else 1) that divides a group's channels and to which
        // x, dy and dx are aligned. gpb groups a block, so that a position's channels that a block
        // reads fill a 32-byte sector where the groups allow (DLAB_GN_GPB=1: one group a block).
        // Threads: a whole number of positions' worth (TPP threads a position), about 256, fewer
        // where the positions are fewer; each keeps up to 4 positions in registers (K).
        const bool several = several_groups_a_block();
        // DLAB_GN_BWD_K: at most this many positions a thread kept in registers (0, 1, 2 or 4;
        // default 4; 0 reads x and dy again in the second pass), for comparisons.
        static const int kmax = [] {
            const char* env = std::getenv("DLAB_GN_BWD_K");
            const int v = env ? std::atoi(env) : 4;
            return v == 0 || v == 1 || v == 2 ? v : 4;
        }();
        auto go = [&](auto vec) {
            constexpr int VEC = decltype(vec)::value;
            int gpb = 1;
            while (several && cg * gpb * int(sizeof(float)) < 32 && groups % (2 * gpb) == 0 && 32 % (cg * 2 * gpb / VEC) == 0)
                gpb *= 2;
            const int tpp = cg * gpb / VEC;
            int threads = tpp >= 256 ? tpp : (256 / tpp) * tpp;
            if (int64_t(HW) * tpp < threads) threads = 32 % tpp == 0 ? (HW * tpp + 31) / 32 * 32 : HW * tpp;
            const int per = (HW + threads / tpp - 1) / (threads / tpp);  // positions a thread
            const int rows = 32 % tpp == 0 ? (threads + 31) / 32 : threads / tpp;
            const size_t shared = 3 * size_t(cg) * gpb * (rows + 1) * sizeof(float);
            const auto cs = static_cast<cudaStream_t>(stream);
            const int blocks = N * groups / gpb;
            auto launch = [&](auto k) {
                constexpr int KP = decltype(k)::value;
                group_norm_act_backward_nhwc_kernel<VEC, KP><<<blocks, threads, shared, cs>>>(
                    x, bias, gamma, beta, stats, dy, dx, dbias, dgamma_n, dbeta_n, C, HW, groups, gpb, silu);
            };
            // K: the fewest of 1, 2, 4 that covers the thread's positions, at most kmax (registers:
            // K = 4 with 4-vectors takes ~120 a thread); none in blocks over 256 threads.
            const int k = kmax == 0 || threads > 256 ? 0 : per <= 1 ? 1 : per <= 2 || kmax == 2 ? 2 : 4;
            if (k == 0) launch(std::integral_constant<int, 0>());
            else if (k == 1) launch(std::integral_constant<int, 1>());
            else if (k == 2) launch(std::integral_constant<int, 2>());
            else launch(std::integral_constant<int, 4>());
        };
        with_vector<float>(cg, {x, dy, dx}, go);
        return static_cast<int>(cudaGetLastError());
    }
    const int threads = 32 * (cg < 8 ? cg : 8);
    group_norm_act_backward_kernel<<<N * groups, threads, 3 * cg * sizeof(float), static_cast<cudaStream_t>(stream)>>>(
        x, bias, gamma, beta, stats, dy, dx, dbias, dgamma_n, dbeta_n, C, HW, groups, silu);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace dlab::cuda_kernels
