#!/usr/bin/env bash
# Session 29 (issue 17): the decoder's upsampling convolution as four phases of a 2x2 convolution
# (fused_upsample_conv; DLAB_SUBPIXEL=0 off) and the GroupNorm sums pass for inputs of at most 64 KB a
# sample (DLAB_GN_SUMS_PASS=0 off; DLAB_GN_SUMS_MAX_KB=1000: every such norm), on the batch-256
# guided pass beside the peer. Device tool, carry [".gpu-lat"], ~6 min: bench --check-fused; the
# same samples both ways; kernel profiles (float32, float16); ours, then the peer (torch.compile
# reduce-overhead, float32 and float16) and ours ROUNDS times (default 2); FID of
# fashion-mnist-quality (DPM-Solver++ 50, N = 10,000) in float32 and float16.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-subpixel.log}
source installer/gpu-common.sh || exit 1
echo "== 0. bench --check-fused"
check_fused check-fused-subpixel.log
grep -E "WRONG|not usable|upsampling convolution|sums pass \+ streaming norm" $OUT/check-fused-subpixel.log | cut -c1-400
modes=("DLAB_SUBPIXEL=1" "DLAB_SUBPIXEL=0" "DLAB_GN_SUMS_PASS=0" "DLAB_GN_SUMS_MAX_KB=1000" "DLAB_HALF=fp16" "DLAB_HALF=fp16 DLAB_SUBPIXEL=0")
echo "== 1. the same samples"
sample_modes default "${modes[0]}" "${modes[1]}"
python3 bench/compare_samples.py default subpixel=/tmp/samples-0.safetensors old=/tmp/samples-1.safetensors --pairs subpixel-old 2>&1 | tail -3
echo "== 2. kernels of 20 batch-256 passes"
profile_modes "${modes[0]}" "${modes[4]}"
echo "== 3. ours, the peer (float32, float16), ours; ROUNDS times"
bench_modes 1 default 100 "${modes[@]}"
for ((r = 0; r < ${ROUNDS:-2}; r++)); do
  peer
  peer --dtype float16
  bench_modes 1 default 100 "${modes[@]}"
done
echo "== 4. FID, quality model, DPM-Solver++ 50 linspace, s = 1, N = 10,000"
fid_quality "${modes[0]}" "${modes[4]}"
echo "total $((SECONDS - t0)) s"
