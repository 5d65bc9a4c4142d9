#!/usr/bin/env bash
# Device run for issue 3: trains the `live` model (UNet base 16, multipliers 1,2,4: a third of the
# default's compute, for chains animated on a CPU) on Fashion-MNIST and evaluates it like the default.
# Needs carry [".gpu-live"] (nlohmann deb + the Fashion-MNIST .gz files). Results: $OUT/live.tgz.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/dlab-gpu-out}
G=${GPU_DIR:-.gpu-live}
mkdir -p "$OUT"
G=${GPU_DIR:-.gpu-live}
source installer/gpu-common.sh
echo '{"network": {"base_channels": 16, "channel_mult": [1, 2, 4], "num_res_blocks": 1, "attention_resolutions": [7]}}' > gpu-logs/live-config.json
$cli train --dataset fashion-mnist --config gpu-logs/live-config.json --steps 200000 --batch 128 --lr 4e-4 --warmup 500 \
  --ema 0.9995 --log-every 1000 --checkpoint-every 100000 --max-minutes "${LIVE_MIN:-5}" --device cuda --out runs/live \
  > gpu-logs/train-live.log 2>&1
tail -n 2 gpu-logs/train-live.log
cp runs/live/model.safetensors gpu-logs/fashion-mnist-live.safetensors
cp runs/live/loss.csv gpu-logs/fashion-mnist-live.loss.csv
$cli eval --model gpu-logs/fashion-mnist-live.safetensors --scales 0,1,2,3 --count 10000 --batch 1000 --steps 50 \
  --device cuda --metrics fid,is,precision,recall,agreement,diversity --json gpu-logs/eval-live.json 2>&1 | tee gpu-logs/eval-live.log
tar czf "$OUT/live.tgz" gpu-logs/*.log gpu-logs/*.json gpu-logs/*.csv gpu-logs/fashion-mnist-live.safetensors
echo "total $((SECONDS - t0)) s"
