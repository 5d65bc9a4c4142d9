#!/usr/bin/env bash
# The fused kernels on the GPU machine (issue 17, item 2): builds the headless CLI against CUDA
# LibTorch with the project's fused GroupNorm (+ time-embedding add) (+ SiLU) CUDA kernel
# (-DDLAB_WITH_FUSED_CUDA=ON, nvcc) and checks and times it against the unfused path in one call:
#  0. bench --check-fused: each kernel (both GroupNorm kernels) against a float64 reference on
#     random inputs, and timed;
#  1. the same samples (DDIM 20, s = 3, 8 images, seed 11) fused channels-last (the default), fused
#     in the plain layout (DLAB_CHANNELS_LAST=0), unfused (DLAB_FUSED_KERNELS=0) and channels-last
#     with GroupNorm kernel 2 (DLAB_GN_KERNEL=2), for the default and the quality model: the
#     largest differences;
#  2. the guided forward pass at batch 1 and 256 in those four modes alternated, then the PyTorch
#     peer (bench/sample_reference.py: eager, CUDA graph, torch.compile default / reduce-overhead);
#  3. training (where only the fused attention, scaled_dot_product_attention, applies), batch 128.
# Device tool, carry [".gpu-sched"]; the tree needs fashion-mnist-cosine and fashion-mnist-quality.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
FUSED=1
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
grep -i "cuda graphs\|fused" gpu-logs/configure.log
echo "== 0. the kernels against a float64 reference on random inputs, timed against LibTorch's ops"
DLAB_FUSED_KERNELS=1 $cli bench --check-fused --device cuda || echo "CHECK FAILED (rc $?)"
# Four ways to run inference: fused kernels with the channels-last layout and GroupNorm kernel 1,
# fused kernels in the plain layout, LibTorch's ops (plain), and channels-last with GroupNorm
# kernel 2 (one read through shared memory; fused_ops.h; the default on CUDA since session 18).
modes=("DLAB_FUSED_KERNELS=1 DLAB_CHANNELS_LAST=1 DLAB_GN_KERNEL=1" "DLAB_FUSED_KERNELS=1 DLAB_CHANNELS_LAST=0" "DLAB_FUSED_KERNELS=0"
       "DLAB_FUSED_KERNELS=1 DLAB_CHANNELS_LAST=1 DLAB_GN_KERNEL=2")
echo "== 1. the same samples in each mode: channels-last (cl), plain (nchw), unfused, GroupNorm kernel 2 (gn2)"
for m in default fashion-mnist-quality; do
  sample_modes $m "${modes[@]}"
  python3 bench/compare_samples.py $m cl=/tmp/samples-0.safetensors plain=/tmp/samples-1.safetensors \
    unfused=/tmp/samples-2.safetensors gn2=/tmp/samples-3.safetensors --pairs cl-unfused,plain-unfused,cl-plain,gn2-cl
done
echo "== 2. guided forward pass (ms) in each mode, alternated twice, then the peer"
bench_modes 2 default 100 "${modes[3]}" "${modes[0]}" "${modes[1]}" "${modes[2]}"
(cd bench && timeout 240 python3 sample_reference.py --batches 1,256 --iters 100) 2>&1 | grep -v "Warning\|warn"
bench_modes 1 fashion-mnist-quality 50 "${modes[3]}" "${modes[0]}" "${modes[1]}" "${modes[2]}"
echo "total $((SECONDS - t0)) s"
echo "== 3. training, batch 128 (fused attention only)"
for f in 1 0; do
  DLAB_FUSED_KERNELS=$f $cli train --dataset fashion-mnist --steps 650 --batch 128 --lr 3e-4 --warmup 50 --ema 0.9995 \
    --log-every 50 --checkpoint-every 100000 --device cuda --out /tmp/fspeed --overwrite > /tmp/fspeed.log 2>&1 ||
    tail -3 /tmp/fspeed.log
  awk -F, -v f=$f 'NR > 2 { n++; s += $4 } END { printf "DLAB_FUSED_KERNELS=%s: %.0f img/s\n", f, s / n }' /tmp/fspeed/loss.csv
done
echo "total $((SECONDS - t0)) s"
