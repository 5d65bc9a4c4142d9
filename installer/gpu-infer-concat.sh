#!/usr/bin/env bash
# The decoder's concatenation, fused (default: never written; the skip 1x1 convolution run as two
# halves) against DLAB_FUSED_CONCAT=0 (concatenate, then one GroupNorm and one skip convolution), for
# issue 17's batch-256 sampling target. Device tool, carry [".gpu-lat"] (or GPU_DIR with debs/ and
# data/), ~5 min: bench --check-fused first; the same samples both ways; the guided pass at batch 1 and 256 alternated twice; the
# kernels of 20 batch-256 passes each way; the peer (torch.compile reduce-overhead) in the same call.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-infer-concat.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-concat.log
modes=("DLAB_FUSED_CONCAT=1" "DLAB_FUSED_CONCAT=0")
echo "== 1. the same samples"
sample_modes default "${modes[@]}"
python3 bench/compare_samples.py default fused=/tmp/samples-0.safetensors concat=/tmp/samples-1.safetensors --pairs fused-concat 2>&1 | tail -3
echo "== 2. guided pass, alternated"
bench_modes 2 default 100 "${modes[@]}"
echo "== 3. kernels of 20 batch-256 passes"
for m in "${modes[@]}"; do
  echo "-- $m"
  env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=14 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
    grep -E "^profile|ms/step"
done
echo "== 4. the peer"
(cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants graph,compile-ro) 2>&1 |
  grep -v "Warning\|warn"
echo "total $((SECONDS - t0)) s"
