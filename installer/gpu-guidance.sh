#!/usr/bin/env bash
# Device runs for classifier guidance, the trainer's new options and the guidance sweeps.
#   installer/gpu-guidance.sh train  : builds the headless CLI against CUDA LibTorch; trains the
#       noise-aware classifier (bundled as fashion-mnist-noisy-classifier); times the trainer in
#       fp32 and bf16 autocast side by side; trains a short hybrid-loss (learned variance) model.
#   installer/gpu-guidance.sh sweep  : classifier-free and classifier guidance sweeps of the default
#       model (N samples per scale, same starting noise), metrics against the test set.
# Needs carry [".gpu"] (.gpu/debs from installer/gpu-prepare.sh, .gpu/data with the Fashion-MNIST
# .gz files; for sweep also .gpu/noisy.safetensors from the train run). Results: $OUT/*.tgz.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/dlab-gpu-out}
mode=${1:-train}
mkdir -p "$OUT"
G=${GPU_DIR:-.gpu}
source installer/gpu-common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee gpu-logs/gpu.txt
if [ "$mode" = train ]; then
  $cli train-classifier --noisy --steps "${NOISY_STEPS:-10000}" --batch 256 --lr 5e-4 --schedule cosine \
    --out gpu-logs/fashion-mnist-noisy-classifier.safetensors --device cuda > gpu-logs/noisy-classifier.log 2>&1 &
  pc=$!
  # fp32 and bf16 autocast, same config, one after the other on the same GPU (the classifier
  # trains beside both, so the ratio is fair though absolute figures are lower than alone).
  for prec in fp32 bf16; do
    flag=""; [ $prec = bf16 ] && flag=--bf16
    $cli train --dataset fashion-mnist --steps 1500 --batch 128 --log-every 500 --checkpoint-every 100000 \
      --device cuda $flag --out runs/speed-$prec > gpu-logs/train-speed-$prec.log 2>&1
  done
  $cli train --dataset fashion-mnist --steps 100000 --batch 128 --lr 3e-4 --warmup 500 --ema 0.9995 \
    --learn-sigma --checkpoint-every 100000 --log-every 1000 --device cuda --max-minutes 2.5 \
    --out runs/hybrid > gpu-logs/train-hybrid.log 2>&1
  for s in ddpm ddim; do
    $cli sample --model runs/hybrid/model.safetensors --sampler $s --steps 100 --guidance 3 --count 1000 \
      --tensors gpu-logs/hybrid-$s.safetensors --device cuda > gpu-logs/sample-hybrid-$s.log 2>&1
  done
  $cli eval --model runs/hybrid/model.safetensors --scales 3 --sampler ddpm --steps 100 --count 5000 \
    --device cuda --classifier resources/models/fashion-mnist-classifier.safetensors > gpu-logs/eval-hybrid-ddpm.log 2>&1 || true
  wait $pc
  cp runs/hybrid/model.safetensors gpu-logs/hybrid-model.safetensors
  cp runs/hybrid/loss.csv gpu-logs/hybrid-loss.csv
  tail -n 3 gpu-logs/train-*.log gpu-logs/eval-hybrid-ddpm.log; tail -n 14 gpu-logs/noisy-classifier.log
  tar czf "$OUT/guidance-train.tgz" gpu-logs
else
  N=${N:-10000}
  cp .gpu/noisy.safetensors gpu-logs/noisy.safetensors
  $cli sweep --kind cfg --scales "${CFG_SCALES:-0,1,2,3,5}" --count "$N" --batch 1000 --device cuda \
    --json gpu-logs/sweep-cfg.json --csv gpu-logs/sweep-cfg.csv 2>&1 | tee gpu-logs/sweep-cfg.log
  $cli sweep --kind classifier --noisy-classifier gpu-logs/noisy.safetensors --scales "${CG_SCALES:-0,1,3,10}" \
    --count "$N" --batch 1000 --device cuda --json gpu-logs/sweep-classifier.json --csv gpu-logs/sweep-classifier.csv \
    2>&1 | tee gpu-logs/sweep-classifier.log
  tar czf "$OUT/guidance-sweep.tgz" gpu-logs/*.json gpu-logs/*.csv gpu-logs/*.log
fi
echo "total $((SECONDS - t0)) s"
