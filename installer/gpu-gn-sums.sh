#!/usr/bin/env bash
# The GroupNorm sums pass (issue 17, session 29): the norms whose input came from a convolution (a
# residual block's second norm, the decoder's first after an upsampling, the encoder's after a
# convolution) from a pass that reads the input once for its per-channel sums, then the streaming
# norm, against kernel 2 (DLAB_GN_SUMS_PASS=0), and with kernel 2 kept for the 7x7 maps
# (DLAB_GN_SUMS_MIN=4000). Device tool, carry [".gpu-lat"], ~6 min: bench --check-fused; the same
# samples both ways; kernel profiles (float32, float16); the guided pass alternated; the peer
# (torch.compile reduce-overhead, float32 and float16) between our runs, ROUNDS times (default 2);
# FID of fashion-mnist-quality (DPM-Solver++ 50, N = 10,000) in float32 and float16.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-gn-sums.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-gn-sums.log
grep -E "WRONG|not usable|sums pass \+ streaming norm" $OUT/check-fused-gn-sums.log | cut -c1-400
modes=("DLAB_GN_SUMS_PASS=1" "DLAB_GN_SUMS_PASS=0" "DLAB_GN_SUMS_MIN=4000" "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_GN_SUMS_PASS=0")
echo "== 1. the same samples"
sample_modes default "${modes[0]}" "${modes[1]}"
python3 bench/compare_samples.py default pass=/tmp/samples-0.safetensors smem=/tmp/samples-1.safetensors --pairs pass-smem 2>&1 | tail -3
echo "== 2. kernels of 20 batch-256 passes"
for m in "${modes[0]}" "${modes[3]}"; do
  echo "-- $m"
  env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=16 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
    grep -E "^profile|ms/step"
done
echo "== 3. ours, the peer (float32, float16), ours; ROUNDS times"
peer() { (cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro "$@") 2>&1 | grep -E "^ +256"; }
bench_modes 1 default 100 "${modes[@]}"
for ((r = 0; r < ${ROUNDS:-2}; r++)); do
  peer
  peer --dtype float16
  bench_modes 1 default 100 "${modes[@]}"
done
echo "== 4. FID, quality model, DPM-Solver++ 50 linspace, s = 1, N = 10,000"
for m in "${modes[0]}" "${modes[3]}"; do
  env $m $cli eval --model fashion-mnist-quality --scales 1 --count 10000 --batch 1000 --sampler dpmpp2m \
    --steps 50 --spacing linspace --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "floor|s=1.00" |
    sed "s/^/$m /"
done
echo "total $((SECONDS - t0)) s"
