#!/usr/bin/env bash
# Half-precision CUDA inference and GroupNorm kernel 2 on the GPU machine (issue 17): builds the
# headless CLI with the fused kernels and, in one call:
#  0. bench --check-fused: both float32 GroupNorm kernels and the float16 / bfloat16 ones (kernel 2)
#     against float64 on random inputs;
#  1. the same samples (DDIM 20, s = 3, 8 images, seed 11) float32 (kernel 1, the default), float32
#     with kernel 2, DLAB_HALF=fp16 and DLAB_HALF=bf16, default and quality model: the differences;
#  2. the guided forward pass at batch 1 and 256 in those four modes, alternated twice, then the
#     PyTorch peer (bench/sample_reference.py, channels_last) in float32 and in float16: CUDA graph
#     and torch.compile reduce-overhead;
#  3. FID of the quality model (DPM-Solver++ 50 linspace, s = 1, N = 10,000, seed 0) in float32 and
#     in float16 / bfloat16: the reduced precision's cost in quality.
# Device tool, carry [".gpu-sched-eval"] (GPU_DIR); the tree needs fashion-mnist-cosine,
# fashion-mnist-quality and fashion-mnist-classifier.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched-eval}
FUSED=1 LOG=half.log
source installer/gpu-common.sh || exit 1
echo "== 0. the kernels against float64"
$cli bench --check-fused --device cuda || echo "CHECK FAILED (rc $?)"
modes=("DLAB_GN_KERNEL=1" "DLAB_GN_KERNEL=2" "DLAB_HALF=fp16" "DLAB_HALF=bf16")
echo "== 1. the same samples in each mode: float32 kernel 1, float32 kernel 2, fp16, bf16"
for m in default fashion-mnist-quality; do
  sample_modes $m "${modes[@]}"
  python3 bench/compare_samples.py $m fp32=/tmp/samples-0.safetensors kernel2=/tmp/samples-1.safetensors \
    fp16=/tmp/samples-2.safetensors bf16=/tmp/samples-3.safetensors --pairs kernel2-fp32,fp16-fp32,bf16-fp32
done
echo "== 2. guided forward pass (ms) in each mode, alternated twice, then the peer"
bench_modes 2 default 100 "${modes[@]}"
for d in float32 float16; do
  (cd bench && timeout 200 python3 sample_reference.py --batches 1,256 --iters 100 --variants graph,compile-ro \
    --channels-last --dtype $d) 2>&1 | grep -v "Warning\|warn"
done
bench_modes 1 fashion-mnist-quality 50 "${modes[0]}" "${modes[2]}"
echo "total $((SECONDS - t0)) s"
echo "== 3. FID, quality model, DPM-Solver++ 50 linspace, s = 1, N = 10,000"
for i in 0 2 3; do
  env ${modes[$i]} $cli eval --model fashion-mnist-quality --scales 1 --count 10000 --batch 1000 --sampler dpmpp2m \
    --steps 50 --spacing linspace --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "floor|s=1.00" |
    sed "s/^/${modes[$i]} /"
done
echo "total $((SECONDS - t0)) s"
