#!/usr/bin/env bash
# The bundled text-to-image pair on the GPU machine (device tool, carry [".gpu-sched"]: debs/ with
# nlohmann-json3-dev, data/ with Fashion-MNIST). Builds the headless CLI, trains the small CLIP
# (fashion-mnist-clip) on the captions, then the text-conditional UNet (fashion-mnist-text) on the
# captions read by that frozen CLIP for at most MINUTES (default 5), and writes both (the UNet as
# float16 EMA weights, as bundled), the loss log and the logs to $OUT.
#   installer/gpu-text.sh [MINUTES] [EXTRA train OPTIONS...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
minutes=${1:-5}
shift || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
clip=$OUT/fashion-mnist-clip.safetensors
t1=$SECONDS
$cli train-clip --out "$clip" --device cuda --steps 4000 --batch 512 --log-every 500 --overwrite 2>&1 |
  tee "$OUT/train-clip.log" | grep -vE "^  " | tail -12
echo "clip $((SECONDS - t1)) s"
run=/tmp/text-run
rm -rf "$run"
$cli train --dataset fashion-mnist-captions --text-encoder "$(realpath "$clip")" --out "$run" --device cuda --size large \
  --base-channels 48 --batch 256 --lr 3e-4 --steps 100000 --warmup 500 --ema 0.9995 --bf16 --log-every 500 \
  --checkpoint-every 2000 --max-minutes "$minutes" "$@" 2>&1 | tee "$OUT/train-text.log" | grep -E "^step [0-9]*000/|done|error|training|captions"
$cli convert --in "$run/model.safetensors" --out "$OUT/fashion-mnist-text.safetensors" --half \
  --text-encoder fashion-mnist-clip
cp "$run/loss.csv" "$OUT/fashion-mnist-text.loss.csv"
echo "total $((SECONDS - t0)) s"
