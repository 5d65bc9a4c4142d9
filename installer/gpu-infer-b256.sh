#!/usr/bin/env bash
# The batch-256 guided pass (issue 17's 1.2x target) beside the peer: the project as it is against
# session 28's path (s28: DLAB_SUBPIXEL=0 DLAB_FIRST_CONV_SUMS=0 DLAB_GN_SUMS_PASS=0) and without the
# first convolution's sums alone. Device tool, carry [".gpu-lat"], ~7 min with ROUNDS=3:
# bench --check-fused; kernel profiles of 20 batch-256 passes (float32, float16); our modes, then
# the peer (torch.compile reduce-overhead, float32 and float16) and our modes, ROUNDS times
# (default 1); FID of fashion-mnist-quality (DPM-Solver++ 50, N = 10,000) in float32 and float16.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-infer-b256.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-b256.log
grep -E "WRONG|first convolution \[512" $OUT/check-fused-b256.log | cut -c1-300
s28="DLAB_SUBPIXEL=0 DLAB_FIRST_CONV_SUMS=0 DLAB_GN_SUMS_PASS=0"
modes=("DLAB_GN_STATS=1" "$s28" "DLAB_FIRST_CONV_SUMS=0" "DLAB_HALF=fp16" "DLAB_HALF=fp16 $s28")
echo "== 1. kernels of 20 batch-256 passes"
profile_modes "${modes[0]}" "${modes[3]}"
echo "== 2. ours, the peer (float32, float16), ours; ROUNDS times (default 1)"
bench_modes 1 default 100 "${modes[@]}"
for ((r = 0; r < ${ROUNDS:-1}; r++)); do
  peer
  peer --dtype float16
  bench_modes 1 default 100 "${modes[@]}"
done
echo "== 3. FID, quality model, DPM-Solver++ 50 linspace, s = 1, N = 10,000"
fid_quality "${modes[0]}" "${modes[3]}"
echo "total $((SECONDS - t0)) s"
