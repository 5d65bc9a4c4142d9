#!/usr/bin/env bash
# Device runs for latent diffusion (issue 9).
#   installer/gpu-latent.sh train : builds the headless CLI against CUDA LibTorch; trains two
#       autoencoders side by side (L1 + KL, and with the classifier-feature term), keeps the one with
#       the lower reconstruction FD, and trains the latent UNet on its latents.
#   installer/gpu-latent.sh eval  : the bundled latent model against the bundled pixel model (CFG
#       scales, N samples each, same starting noise; sampling time side by side) and the VAE decoder
#       as a one-step generator. (Training throughput, latent against pixel, was measured with the
#       three `train --steps 1500 --batch 256` runs listed in docs/eval/latent-*.log.)
# Needs carry [".gpu"] (.gpu/debs, .gpu/data), or GPU_DIR=.gpu-lat with a smaller data folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/dlab-gpu-out}
mode=${1:-train}
mkdir -p "$OUT"
G=${GPU_DIR:-.gpu}
source installer/gpu-common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee gpu-logs/gpu.txt
if [ "$mode" = train ]; then
  # Two autoencoders at once (small models; the GPU has room): plain, and with the perceptual term.
  $cli train-autoencoder --out gpu-logs/ae-l1.safetensors --steps 30000 --batch 128 --lr 5e-4 --kl-weight 1e-4 \
    --base-channels 64 --log-every 2000 --max-minutes "${AE_MIN:-2.5}" --device cuda > gpu-logs/ae-l1.log 2>&1 &
  p1=$!
  $cli train-autoencoder --out gpu-logs/ae-perc.safetensors --steps 30000 --batch 128 --lr 5e-4 --kl-weight 1e-4 \
    --perceptual 0.02 --base-channels 64 --log-every 2000 --max-minutes "${AE_MIN:-2.5}" --device cuda > gpu-logs/ae-perc.log 2>&1 &
  p2=$!
  wait $p1 || true
  wait $p2 || true
  tail -n 3 gpu-logs/ae-l1.log gpu-logs/ae-perc.log
  fd() { grep -o "reconstruction FD [0-9.]*" "$1" | awk '{print $3}'; }
  best=ae-l1
  if [ -f gpu-logs/ae-perc.safetensors ] && awk -v a="$(fd gpu-logs/ae-perc.log)" -v b="$(fd gpu-logs/ae-l1.log)" 'BEGIN{exit !(a<b)}'; then best=ae-perc; fi
  echo "latent model on $best"
  cp gpu-logs/$best.safetensors gpu-logs/fashion-mnist-autoencoder.safetensors
  cat > gpu-logs/latent-config.json <<'JSON'
{"network": {"base_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_resolutions": [4], "dropout": 0.1}}
JSON
  $cli train --dataset latents:gpu-logs/fashion-mnist-autoencoder.safetensors --config gpu-logs/latent-config.json \
    --steps 200000 --batch 256 --lr 3e-4 --warmup 500 --ema 0.9995 --log-every 1000 --checkpoint-every 100000 \
    --max-minutes "${LDM_MIN:-3.5}" --device cuda --out runs/latent > gpu-logs/train-latent.log 2>&1
  cp runs/latent/model.safetensors gpu-logs/latent-fashion-mnist.safetensors
  cp runs/latent/loss.csv gpu-logs/latent-loss.csv
  tail -n 3 gpu-logs/train-latent.log
  tar czf "$OUT/latent-train.tgz" gpu-logs/*.log gpu-logs/*.json gpu-logs/*.csv gpu-logs/*.safetensors gpu-logs/gpu.txt
else
  # The bundled (float16) files, evaluated as shipped; the floor uses the first N training images,
  # so a data folder with only those (GPU_DIR=.gpu-lat, see the note of issue 9) is enough.
  N=${N:-10000}
  for m in latent-fashion-mnist default; do
    $cli eval --model $m --scales "${SCALES:-0,1,2,3}" --count "$N" --batch 1000 --steps 50 --device cuda \
      --metrics fid,is,precision,recall,agreement,diversity --json gpu-logs/eval-$m.json 2>&1 | tee gpu-logs/eval-$m.log
  done
  $cli eval --model fashion-mnist-autoencoder --count "$N" --device cuda --metrics fid,is,precision,recall,diversity \
    --json gpu-logs/eval-vae.json 2>&1 | tee gpu-logs/eval-vae.log
  tar czf "$OUT/latent-eval.tgz" gpu-logs/eval-* gpu-logs/gpu.txt
fi
echo "total $((SECONDS - t0)) s"
