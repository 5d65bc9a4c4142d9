#!/usr/bin/env bash
# The batch-256 guided pass (issue 17's 1.2x target) beside the peer: the project as it is against
# DLAB_KEEP_DERIVED=0 (the biases and weight slices made from parameters anew each pass),
# DLAB_FIRST_CONV=0 (cuDNN's first convolution) and DLAB_FUSED_CONCAT=0. Device tool, carry [".gpu-lat"], ~5 min: bench --check-fused; the same
# samples; the guided pass at batch 1 and 256 alternated twice; kernel profiles of 20 batch-256
# passes (float32, float16); the peer (torch.compile reduce-overhead, float32 and float16) between
# our runs, twice.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-infer-b256.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-b256.log
grep -E "WRONG|first convolution" $OUT/check-fused-b256.log
modes=("DLAB_KEEP_DERIVED=1" "DLAB_KEEP_DERIVED=0 DLAB_FIRST_CONV=0" "DLAB_KEEP_DERIVED=0" "DLAB_FIRST_CONV=0" "DLAB_FUSED_CONCAT=0")
echo "== 1. the same samples"
sample_modes default "${modes[0]}" "${modes[1]}"
python3 bench/compare_samples.py default kept=/tmp/samples-0.safetensors anew=/tmp/samples-1.safetensors --pairs kept-anew 2>&1 | tail -3
echo "== 2. guided pass, alternated"
bench_modes 2 default 60 "${modes[@]}"
echo "== 3. kernels of 20 batch-256 passes"
for m in "${modes[0]}" "DLAB_HALF=fp16"; do
  echo "-- $m"
  env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=24 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
    grep -E "^profile|ms/step"
done
echo "== 4. the peer, float32 and float16, between ours"
peer() { (cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro "$@") 2>&1 | grep -E "^ +256"; }
for r in 1 2; do
  peer
  bench_modes 1 default 100 "${modes[0]}"
  peer --dtype float16
  bench_modes 1 default 100 "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_KEEP_DERIVED=0 DLAB_FIRST_CONV=0"
done
echo "total $((SECONDS - t0)) s"
