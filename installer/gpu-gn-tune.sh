#!/usr/bin/env bash
# GroupNorm kernel 2's launch settings A/B (group_norm_act.cu, gn_tuning) on the batch-256 guided
# pass, with the peer's kernel profile for comparison. Device tool, carry [".gpu-lat"], ~6 min:
# bench --check-fused under the default and the widest settings; the guided pass at batch 1 and
# 256 under each setting, alternated twice; kernel profiles of 20 batch-256 passes each; the peer
# (torch.compile reduce-overhead, float32) timed and profiled.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-gn-tune.log}
source installer/gpu-common.sh || exit 1
wide="DLAB_GN_ROW_BYTES=128 DLAB_GN_MIN_BLOCKS=256 DLAB_GN_SMEM_FLOATS=56000"
modes=("DLAB_GN_UNROLL=1" "DLAB_GN_UNROLL=4" "$wide" "$wide DLAB_GN_THREADS=1024" "$wide DLAB_GN_THREADS=1024 DLAB_GN_UNROLL=4"
       "DLAB_GN_MIN_BLOCKS=512 DLAB_GN_SMEM_FLOATS=56000")
echo "== 0. bench --check-fused, default and widest"
check_fused check-fused-gn.log
grep -E "WRONG" $OUT/check-fused-gn.log
env $wide DLAB_GN_THREADS=1024 DLAB_GN_UNROLL=4 $cli bench --check-fused --device cuda > $OUT/check-fused-gn-wide.log 2>&1
echo "wide: check-fused rc=$? $(grep -c ' ok' $OUT/check-fused-gn-wide.log) ok $(grep -c WRONG $OUT/check-fused-gn-wide.log) WRONG"
grep -E "WRONG|channels-last / 8 groups, kernel 2" $OUT/check-fused-gn-wide.log
echo "== 1. kernels of 20 batch-256 passes, each setting"
for m in "${modes[@]}"; do
  echo "-- $m"
  env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=6 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
    grep -E "^profile|ms/step"
done
echo "== 2. guided pass, alternated"
bench_modes 2 default 60 "${modes[@]}"
echo "== 3. the peer, float32, timed and profiled"
(cd bench && timeout 240 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro --profile 20) 2>&1 | grep -vE "^W|warn" | tail -30
bench_modes 1 default 100 "${modes[0]}"
echo "total $((SECONDS - t0)) s"
