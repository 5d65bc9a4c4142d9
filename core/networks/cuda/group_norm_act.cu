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

}  // namespace

namespace dlab::cuda_kernels {

// x and y [N, C, HW], or [N, HW, C] with `nhwc`. Launches on `stream` (a cudaStream_t); returns the launch's cudaError_t as an int (0: success).
int group_norm_act(const float* x, const float* bias, const float* gamma, const float* beta,
                   float* y, int N, int C, int HW, int groups, float eps, bool silu, bool nhwc,
                   void* stream) {
    const int count = (C / groups) * HW;
    const int threads = count >= 8192 ? 512 : count >= 1024 ? 256 : 128;
    group_norm_act_kernel<<<N * groups, threads, 0, static_cast<cudaStream_t>(stream)>>>(
        x, bias, gamma, beta, y, C, HW, groups, eps, silu, nhwc);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace dlab::cuda_kernels
