#!/usr/bin/env bash
# A short check of the residual kernels after a change (issue 17): the kernels against float64, the
# same samples with them off and on, and the default and quality models' guided pass at batch 1 and
# 256 in four modes alternated twice (no peer, no FID: installer/gpu-residual.sh has them).
# Device tool, carry [".gpu-lat"] (GPU_DIR); the tree needs fashion-mnist-cosine and fashion-mnist-quality.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=residual-quick.log
source installer/gpu-common.sh || exit 1
$cli bench --check-fused --device cuda > "$OUT/check-fused-quick.log" 2>&1
echo "check-fused rc=$?: $(grep -c ' ok' "$OUT/check-fused-quick.log") ok, $(grep -c WRONG "$OUT/check-fused-quick.log") WRONG"
grep -E "^group norm.*channels-last / 8 groups, kernel 2" "$OUT/check-fused-quick.log" | cut -c1-220
modes=("DLAB_FUSED_RESIDUAL=0 DLAB_GN_GPB=1" "DLAB_FUSED_RESIDUAL=1" "DLAB_FUSED_RESIDUAL=0 DLAB_GN_GPB=1 DLAB_HALF=fp16"
       "DLAB_FUSED_RESIDUAL=1 DLAB_HALF=fp16")
sample_modes default "${modes[@]}"
python3 bench/compare_samples.py default off=/tmp/samples-0.safetensors on=/tmp/samples-1.safetensors \
  off16=/tmp/samples-2.safetensors on16=/tmp/samples-3.safetensors --pairs on-off,on16-off16
bench_modes 2 default 100 "${modes[@]}"
bench_modes 1 fashion-mnist-quality 50 "${modes[@]}"
echo "total $((SECONDS - t0)) s"
