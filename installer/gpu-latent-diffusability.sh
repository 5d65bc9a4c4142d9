#!/usr/bin/env bash
# Is the latent space itself what holds the latent model back? (issue 18, item 1). The quality
# autoencoder's posteriors are nearly points (std 0.004 of the scaled latents' 1) and nothing in its
# loss shapes the latent space's spectrum; Skorokhodov et al. 2025 found such latents full of
# high-frequency energy that diffusion models learn poorly, and a scale-equivariance term (decode
# the 2x2-averaged latents to the 2x2-averaged image) that removes it while keeping reconstruction.
# Two steps, one device call each, back to back on one warm machine:
#   installer/gpu-latent-diffusability.sh ae VARIANT [MINUTES]
#       fine-tunes the bundled fashion-mnist-autoencoder-quality (--init-from, lr 2e-4, batch 128,
#       L1 + KL + 0.02 x classifier features as it was trained) for MINUTES (default 3.5); VARIANT
#       se (+ scale equivariance, weight SE, default 0.5), kl (KL weight 1e-3 instead of 1e-4) or
#       sekl (both). Prints its latents' high-frequency share before and after and scores its round
#       trip (10,000 training images encoded and decoded, against the test set: the ceiling of any
#       latent model on it; the bundled autoencoder's is FID 2.82). Kept as gpu-logs/ae-VARIANT.safetensors
#       and returned in $OUT.
#   installer/gpu-latent-diffusability.sh train VARIANT [MINUTES] [STEPS]
#       a latent model from scratch on that autoencoder's latents with the recipe of the bundled
#       latent model's first leg (UNet base 96, v-prediction, min-SNR 5, AdamW 2e-4, warm-up 500,
#       cosine decay to 2e-5 over STEPS = 26028, batch 256, EMA 0.9998; that leg scored FID 9.94 at
#       DDIM 200, s = 1, N = 10,000 on the bundled autoencoder), then that same evaluation. VARIANT
#       "bundled" trains the control on the bundled autoencoder. An autoencoder of an earlier call on
#       a machine since given back: carry it as .gpu-ae/ae-VARIANT.safetensors.
# Session 22 (H200): se 3.0 / kl 3.0 minutes, then train kl 7.0 and train se 7.0 on one warm machine:
# round trips 3.36 (se) and 2.90 (kl), latent models 18.4 (se) and 9.51 (kl) against the bundled
# autoencoder's 9.94 (docs/eval/latent-diffusability-*; README, "The latent space itself, tried").
# Device tool, carry [".gpu-lat"] (debs/ and all 60,000 images as .xz); the tree needs
# fashion-mnist-classifier and fashion-mnist-autoencoder-quality (stash the other models and docs/).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
source installer/gpu-common.sh || exit 1
mode=${1:-ae}
v=${2:-se}
bundled=resources/models/fashion-mnist-autoencoder-quality.safetensors
if [ "$mode" = ae ]; then
  case "$v" in
    se) extra=(--scale-equivariance "${SE:-0.5}" --kl-weight 1e-4) ;;
    kl) extra=(--kl-weight 1e-3) ;;
    sekl) extra=(--scale-equivariance "${SE:-0.5}" --kl-weight 1e-3) ;;
    *) echo "unknown variant $v (se, kl, sekl)"; exit 1 ;;
  esac
  exec > >(tee "$OUT/ae-$v.log") 2>&1
  echo "== autoencoder $v: ${extra[*]}, fine-tuned from $bundled for ${3:-3.5} minutes"
  $cli train-autoencoder --init-from "$bundled" --out "gpu-logs/ae-$v.safetensors" --steps 1000000 --batch 128 --lr 2e-4 \
    --perceptual 0.02 "${extra[@]}" --log-every 2000 --max-minutes "${3:-3.5}" --device cuda 2>&1 |
    grep -E "step [0-9]*000/|FD|PSNR|rror|share|latent space|trained"
  cp "gpu-logs/ae-$v.safetensors" "$OUT/"
  $cli eval --real-as-samples --through "gpu-logs/ae-$v.safetensors" --count 10000 --device cuda \
    --metrics fid,precision,recall,agreement --json "$OUT/ae-$v-round-trip.json" 2>&1 | grep -E "floor|round trip|real"
elif [ "$mode" = train ]; then
  if [ "$v" = bundled ]; then ae=$bundled
  else
    ae=gpu-logs/ae-$v.safetensors
    [ -f "$ae" ] || ae=.gpu-ae/ae-$v.safetensors
    [ -f "$ae" ] || { echo "no autoencoder $v here (run the ae step first on this machine, or carry .gpu-ae/)"; exit 1; }
  fi
  cat > gpu-logs/latent-quality-config.json <<JSON
{"network": {"base_channels": 96, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_resolutions": [8, 4],
             "dropout": 0.1}}
JSON
  run=runs/latent-ae-$v
  rm -rf "$run"
  exec > >(tee "$OUT/latent-ae-$v.log") 2>&1
  echo "== latent model from scratch on $ae, ${4:-26028} steps"
  $cli train --dataset "latents:$PWD/$ae" --config gpu-logs/latent-quality-config.json --prediction v --min-snr 5 \
    --batch 256 --lr 2e-4 --warmup 500 --lr-decay cosine --lr-final 0.1 --ema 0.9998 --device cuda \
    --steps "${4:-26028}" --out "$run" --max-minutes "${3:-7.4}" --log-every 2000 --checkpoint-every 100000 2>&1 |
    grep -E "^step [0-9]*000/|done|rror|train:|encoded"
  cp "$run/loss.csv" "$OUT/latent-ae-$v.loss.csv"
  for spacing in trailing linspace; do
    $cli eval --model "$run/model.safetensors" --scales 1 --count 10000 --sampler ddim --steps 200 --spacing $spacing \
      --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "guidance|floor|s=1"
  done
else
  echo "usage: gpu-latent-diffusability.sh ae|train VARIANT [MINUTES] [STEPS]"; exit 1
fi
echo "total $((SECONDS - t0)) s"
