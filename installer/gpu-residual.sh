#!/usr/bin/env bash
# The residual kernels on the GPU machine (issue 17, batch-256 sampling): the UNet decoder's
# concatenation never written (its first GroupNorm reads both parts; the 1x1 skip convolution as the
# sum of its halves'), a convolution's bias added in one vectorised pass together with the residual
# (residual blocks, attention) or alone (the other convolutions), a vectorised 2x upsampling, and
# GroupNorm blocks of several groups in channels-last. DLAB_FUSED_RESIDUAL=0 turns all but the last
# off, DLAB_GN_GPB=1 the last. One call:
#  0. bench --check-fused: every fused kernel against float64 (the new ones in float32, fp16, bf16);
#  1. the same samples (DDIM 20, s = 3, 8 images, seed 11) with DLAB_FUSED_RESIDUAL=0 and =1, float32
#     and fp16, default and quality model: the differences;
#  2. the guided forward pass at batch 1 and 256, four modes (residual off/on x float32/fp16)
#     alternated twice, then the PyTorch peer (bench/sample_reference.py, channels-last) in float32
#     and float16 (CUDA graph, torch.compile reduce-overhead), then DiffusionLab once more; the quality
#     model off/on;
#  3. the kernels of the batch-256 pass, residual off and on (DLAB_PROFILE_STEPS);
#  4. FID of the quality model (DPM-Solver++ 50 linspace, s = 1, N = 10,000, seed 0) with the new
#     kernels, float32 and fp16 (before them: 3.816 and 3.818, docs/eval/half-h200.log).
# Device tool, carry [".gpu-lat"] (GPU_DIR: debs/ and xz/ or data/); the tree needs
# fashion-mnist-cosine, fashion-mnist-quality and fashion-mnist-classifier.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=residual.log
source installer/gpu-common.sh || exit 1
echo "== 0. the kernels against float64"
$cli bench --check-fused --device cuda > gpu-logs/check-fused.log 2>&1
echo "check-fused rc=$?: $(grep -c ' ok' gpu-logs/check-fused.log) ok, $(grep -c WRONG gpu-logs/check-fused.log) WRONG"
grep -E "concatenation|WRONG|not usable" gpu-logs/check-fused.log
modes=("DLAB_FUSED_RESIDUAL=0 DLAB_GN_GPB=1" "DLAB_FUSED_RESIDUAL=1" "DLAB_FUSED_RESIDUAL=0 DLAB_GN_GPB=1 DLAB_HALF=fp16"
       "DLAB_FUSED_RESIDUAL=1 DLAB_HALF=fp16" "DLAB_FUSED_RESIDUAL=1 DLAB_GN_GPB=1")
echo "== 1. the same samples, residual kernels off and on, float32 and fp16"
for m in default fashion-mnist-quality; do
  sample_modes $m "${modes[@]:0:4}"
  python3 bench/compare_samples.py $m off=/tmp/samples-0.safetensors on=/tmp/samples-1.safetensors \
    off16=/tmp/samples-2.safetensors on16=/tmp/samples-3.safetensors --pairs on-off,on16-off16,on16-on
done
echo "total $((SECONDS - t0)) s"
echo "== 2. guided forward pass (ms), four modes alternated twice, the peer, once more"
bench_modes 2 default 100 "${modes[@]}"
for d in float32 float16; do
  (cd bench && timeout 200 python3 sample_reference.py --batches 1,256 --iters 100 --variants graph,compile-ro \
    --channels-last --dtype $d) 2>&1 | grep -v "Warning\|warn"
done
bench_modes 1 default 100 "${modes[@]:0:4}"
bench_modes 1 fashion-mnist-quality 50 "${modes[@]:0:4}"
echo "total $((SECONDS - t0)) s"
echo "== 3. kernels of the batch-256 guided pass (20 graph replays)"
for m in "${modes[0]}" "${modes[1]}" "${modes[2]}" "${modes[3]}"; do
  echo "-- $m"
  env $m DLAB_PROFILE_STEPS=20 DLAB_PROFILE_ROWS=25 $cli bench --model default --device cuda --batches 256 --iters 30 2>&1 |
    sed -n '/^profile/,$p'
done
echo "total $((SECONDS - t0)) s"
echo "== 4. FID, quality model, DPM-Solver++ 50 linspace, s = 1, N = 10,000"
for m in "${modes[1]}" "${modes[3]}"; do
  env $m $cli eval --model fashion-mnist-quality --scales 1 --count 10000 --batch 1000 --sampler dpmpp2m \
    --steps 50 --spacing linspace --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "floor|s=1.00" |
    sed "s/^/$m /"
done
echo "total $((SECONDS - t0)) s"
