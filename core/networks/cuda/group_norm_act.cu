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

// One block per (sample n, group g) of x [N, C, HW] (contiguous, float32):
// y = act(((x + bias[n, c]) - mean) / sqrt(var + eps) * gamma[c] + beta[c]), the mean and the
// (biased) variance over the group's C/groups channels and HW positions, computed in two passes.
__global__ void group_norm_act_kernel(const float* __restrict__ x, const float* __restrict__ bias,
                                      const float* __restrict__ gamma,
                                      const float* __restrict__ beta, float* __restrict__ y, int C,
                                      int HW, int groups, float eps, bool silu) {
    __shared__ float shared[33];
    const int n = blockIdx.x / groups, g = blockIdx.x % groups;
    const int cg = C / groups, c0 = g * cg;
    const int count = cg * HW;
    const int64_t base = (int64_t(n) * C + c0) * HW;
    const float* xg = x + base;
    float* yg = y + base;
    const float* bg = bias ? bias + int64_t(n) * C + c0 : nullptr;

    float s = 0.f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += xg[i] + (bg ? bg[i / HW] : 0.f);
    const float mean = block_sum(s, shared) / float(count);
    float q = 0.f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const float d = xg[i] + (bg ? bg[i / HW] : 0.f) - mean;
        q += d * d;
    }
    const float rstd = rsqrtf(block_sum(q, shared) / float(count) + eps);
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const int c = c0 + i / HW;
        float v = (xg[i] + (bg ? bg[i / HW] : 0.f) - mean) * rstd * gamma[c] + beta[c];
        if (silu) v = v / (1.f + __expf(-v));
        yg[i] = v;
    }
}

}  // namespace

namespace dlab::cuda_kernels {

// Launches on `stream` (a cudaStream_t); returns the launch's cudaError_t as an int (0: success).
int group_norm_act(const float* x, const float* bias, const float* gamma, const float* beta,
                   float* y, int N, int C, int HW, int groups, float eps, bool silu, void* stream) {
    const int count = (C / groups) * HW;
    const int threads = count >= 8192 ? 512 : count >= 1024 ? 256 : 128;
    group_norm_act_kernel<<<N * groups, threads, 0, static_cast<cudaStream_t>(stream)>>>(
        x, bias, gamma, beta, y, C, HW, groups, eps, silu);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace dlab::cuda_kernels
