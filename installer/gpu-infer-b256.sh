#!/usr/bin/env bash
# The batch-256 guided pass (issue 17's 1.2x target) beside the peer: the project as it is against
# session 27's path (DLAB_GN_STATS=0: every GroupNorm holds its group in shared memory;
# DLAB_ONE_TEMB_GEMM=0: one time-embedding product a block), and in fp16 the streaming norm with
# shorter chunks (DLAB_GN_APPLY_ITERS=4). Device tool, carry [".gpu-lat"], ~5 min:
# bench --check-fused; kernel profiles of 20 batch-256 passes (float32, float16); our modes, then
# the peer (torch.compile reduce-overhead, float32 and float16), then our modes again (ROUNDS=3: the
# peer and ours alternated three times, ~3 min more).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-infer-b256.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-b256.log
grep -E "WRONG" $OUT/check-fused-b256.log
old="DLAB_GN_STATS=0 DLAB_ONE_TEMB_GEMM=0"
modes=("DLAB_GN_STATS=1" "$old" "DLAB_HALF=fp16" "DLAB_HALF=fp16 $old" "DLAB_HALF=fp16 DLAB_GN_APPLY_ITERS=4")
echo "== 1. kernels of 20 batch-256 passes"
for m in "${modes[0]}" "${modes[2]}"; do
  echo "-- $m"
  env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=12 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
    grep -E "^profile|ms/step"
done
peer() { (cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants compile-ro "$@") 2>&1 | grep -E "^ +256"; }
echo "== 2. ours, the peer (float32, float16), ours; ROUNDS times (default 1)"
bench_modes 1 default 100 "${modes[@]}"
for ((r = 0; r < ${ROUNDS:-1}; r++)); do
  peer
  peer --dtype float16
  bench_modes 1 default 100 "${modes[@]}"
done
echo "total $((SECONDS - t0)) s"
