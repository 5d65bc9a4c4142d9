#!/usr/bin/env bash
# The bundled GAN on the GPU machine (device tool, carry [".gpu-gan"]: debs/ with nlohmann-json3-dev,
# data/ with Fashion-MNIST's train split only -- the test split stays out of training). Builds the
# headless CLI, trains fashion-mnist-gan for at most MINUTES (default 5), writes model, loss.csv
# and the log to $OUT.   installer/gpu-gan.sh [MINUTES] [EXTRA train-gan OPTIONS...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-gan}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
minutes=${1:-5}
shift || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
run=/tmp/gan-run
rm -rf "$run"
$cli train-gan --out "$run" --device cuda --steps 100000 --batch 256 --base-channels 64 --z-dim 64 \
  --log-every 500 --checkpoint-every 2000 --max-minutes "$minutes" "$@" 2>&1 | tee "$OUT/train-gan.log" | grep -E "^step [0-9]*000/|done|collapsed|error" 
cp "$run/model.safetensors" "$OUT/fashion-mnist-gan.safetensors"
cp "$run/loss.csv" "$OUT/gan-loss.csv"
echo "total $((SECONDS - t0)) s"
