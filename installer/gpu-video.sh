#!/usr/bin/env bash
# The bundled video model on the GPU machine (device tool, carry [".gpu-sched"]; the working tree
# must hold fashion-mnist-classifier): builds the headless CLI, trains fashion-mnist-video on moving
# Fashion-MNIST clips (16 frames of 48x48) for at most MINUTES (default 2), evaluates it against the
# real clips, and writes the float16 model, its loss log, the eval JSON, 24 sample clips (tensors)
# and the logs to $OUT.
#   installer/gpu-video.sh [MINUTES] [EXTRA video train OPTIONS...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
minutes=${1:-2}
shift || true
run=/tmp/video-run
rm -rf "$run"
$cli video train --out "$run" --device cuda --steps 100000 --batch 32 --base-channels 32 --lr 3e-4 --bf16 \
  --log-every 100 --checkpoint-every 100000 --max-minutes "$minutes" "$@" 2>&1 | tee "$OUT/train-video.log" | grep -E "^step [0-9]*000/|done|error|video train"
$cli video eval --model "$run/model.safetensors" --count 400 --device cuda --json "$OUT/video-eval.json" 2>&1 | tee "$OUT/video-eval.log"
$cli convert --in "$run/model.safetensors" --out "$OUT/fashion-mnist-video.safetensors" --half
cp "$run/loss.csv" "$OUT/fashion-mnist-video.loss.csv"
$cli video sample --model "$run/model.safetensors" --count 24 --device cuda --tensors "$OUT/video-clips.safetensors" > /dev/null 2>&1
echo "total $((SECONDS - t0)) s"
