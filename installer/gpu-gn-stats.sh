#!/usr/bin/env bash
# The streaming GroupNorm from the residual kernel's sums (fused_sums_known) against kernel 2
# (DLAB_GN_STATS=0) on the batch-256 guided pass, beside the peer, and the quality model's FID with
# it. Device tool, carry [".gpu-lat"], ~7 min: bench --check-fused; the same samples both ways;
# kernel profiles (float32, float16); the guided pass at batch 1 and 256 alternated twice (with
# the chunk lengths of the first version: 4 rows of positions); the peer (torch.compile
# reduce-overhead, float32 and float16) between our runs; FID of fashion-mnist-quality (DPM-Solver++
# 50, N = 10,000) in float32 and float16.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-gn-stats.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-gn-stats.log
grep -E "WRONG|streaming.*Float|not usable" $OUT/check-fused-gn-stats.log
modes=("DLAB_GN_STATS=1" "DLAB_GN_STATS_ITERS=4 DLAB_GN_APPLY_ITERS=4" "DLAB_GN_STATS=0")
echo "== 1. the same samples"
sample_modes default "${modes[0]}" "${modes[2]}"
python3 bench/compare_samples.py default sums=/tmp/samples-0.safetensors smem=/tmp/samples-1.safetensors --pairs sums-smem 2>&1 | tail -3
echo "== 2. kernels of 20 batch-256 passes"
ROWS=16 profile_modes "${modes[0]}" "DLAB_HALF=fp16"
echo "== 3. guided pass, alternated"
bench_modes 2 default 60 "${modes[@]}" "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_GN_STATS=0"
echo "== 4. the peer, float32 and float16, between ours"
peer() { (cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro "$@") 2>&1 | grep -E "^ +256"; }
peer
bench_modes 1 default 100 "${modes[0]}" "${modes[2]}"
peer --dtype float16
bench_modes 1 default 100 "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_GN_STATS=0"
echo "== 5. FID, quality model, DPM-Solver++ 50 linspace, s = 1, N = 10,000"
for m in "DLAB_GN_STATS=1" "DLAB_HALF=fp16"; do
  env $m $cli eval --model fashion-mnist-quality --scales 1 --count 10000 --batch 1000 --sampler dpmpp2m \
    --steps 50 --spacing linspace --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "floor|s=1.00" |
    sed "s/^/$m /"
done
echo "total $((SECONDS - t0)) s"
