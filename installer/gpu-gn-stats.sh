#!/usr/bin/env bash
# The streaming GroupNorm from the residual kernel's sums (fused_sums_known) against kernel 2
# (DLAB_GN_STATS=0) on the batch-256 guided pass, beside the peer. Device tool, carry [".gpu-lat"],
# ~6 min: bench --check-fused; the same samples both ways; the guided pass at batch 1 and 256
# alternated twice; kernel profiles (float32, float16); the peer (torch.compile reduce-overhead,
# float32 and float16) between our runs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-gn-stats.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-gn-stats.log
grep -E "WRONG|streaming|not usable" $OUT/check-fused-gn-stats.log
modes=("DLAB_GN_STATS=1" "DLAB_GN_STATS=0")
echo "== 1. the same samples"
sample_modes default "${modes[0]}" "${modes[1]}"
python3 bench/compare_samples.py default sums=/tmp/samples-0.safetensors smem=/tmp/samples-1.safetensors --pairs sums-smem 2>&1 | tail -3
echo "== 2. guided pass, alternated"
bench_modes 2 default 60 "${modes[@]}" "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_GN_STATS=0"
echo "== 3. kernels of 20 batch-256 passes"
for m in "${modes[0]}" "DLAB_HALF=fp16"; do
  echo "-- $m"
  env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=16 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
    grep -E "^profile|ms/step"
done
echo "== 4. the peer, float32 and float16, between ours"
peer() { (cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro "$@") 2>&1 | grep -E "^ +256"; }
peer
bench_modes 1 default 100 "${modes[@]}"
peer --dtype float16
bench_modes 1 default 100 "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_GN_STATS=0"
echo "total $((SECONDS - t0)) s"
