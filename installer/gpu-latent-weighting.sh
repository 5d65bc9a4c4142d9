#!/usr/bin/env bash
# The latent model's loss weighting over t (issue 18, item 1). `eval --from-real` showed the bundled
# latent model losing most of its FID at low noise (from t = 100: 4.79 against the autoencoder's
# round trip 2.82; the pixel model keeps ~2.6 up to t = 600), where min-SNR-5 weights the v loss by
# 5 / (SNR + 1) (t = 100: 0.14, t = 20: 0.01). One variant per call, each a further leg from the
# bundled weights (--init-from, lr 2e-4 with 200 warm-up steps and a cosine decay to 2e-5 over STEPS),
# then scored from real data at t = 20, 100, 300 and from noise (DDIM 200 linspace, s = 1, N = 10,000).
# Device tool, carry [".gpu-lat"] (all 60,000 images); the tree needs fashion-mnist-classifier,
# fashion-mnist-autoencoder-quality and latent-fashion-mnist-quality (stash the others and docs/).
#   installer/gpu-latent-weighting.sh VARIANT [STEPS] [MINUTES]
# VARIANT: ctl (min-SNR 5, the bundled recipe: what one more leg gains by itself), plain (the plain v
# loss, weight 1 at every t), g20 (min-SNR 20). FROM: the weights to start from (default the
# bundled model; e.g. runs/latent-plain/model.safetensors of an earlier call on the same warm
# machine), TAG: a suffix for the run and its files (-leg2), LR: the peak learning rate (2e-4).
# The EMA model comes back as float16 in two parts: cat $OUT/latent-VARIANT$TAG.part-* > model.safetensors.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
source installer/gpu-common.sh || exit 1
v=${1:-ctl}
case "$v" in
  ctl) snr=5 ;;
  plain) snr=0 ;;
  g20) snr=20 ;;
  *) echo "unknown variant $v (ctl, plain, g20)"; exit 1 ;;
esac
ae=resources/models/fashion-mnist-autoencoder-quality.safetensors
from=${FROM:-resources/models/latent-fashion-mnist-quality.safetensors}
cat > gpu-logs/latent-quality-config.json <<JSON
{"network": {"base_channels": 96, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_resolutions": [8, 4],
             "dropout": 0.1}}
JSON
run=runs/latent-$v${TAG:-}
rm -rf "$run"
exec > >(tee "$OUT/latent-weighting-$v${TAG:-}.log") 2>&1
echo "== $v: min-SNR $snr, from $from, ${2:-15000} steps"
$cli train --dataset "latents:$PWD/$ae" --config gpu-logs/latent-quality-config.json --prediction v --min-snr "$snr" \
  --batch 256 --lr "${LR:-2e-4}" --warmup 200 --lr-decay cosine --lr-final 0.1 --ema 0.9998 --device cuda --init-from "$from" \
  --steps "${2:-15000}" --out "$run" --max-minutes "${3:-5.2}" --log-every 1000 --checkpoint-every 100000 2>&1 |
  grep -E "^step [0-9]*000/|done|rror|train:|encoded"
$cli convert --in "$run/model.safetensors" --out /tmp/latent-$v.safetensors --half --autoencoder fashion-mnist-autoencoder-quality &&
  split -b 15M /tmp/latent-$v.safetensors "$OUT/latent-$v${TAG:-}.part-"
$cli eval --model "$run/model.safetensors" --from-real 20,100,300 --scales 1 --count 10000 --sampler ddim --steps 200 \
  --spacing linspace --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "floor|^ +t[0-9]"
$cli eval --model "$run/model.safetensors" --scales 1 --count 10000 --sampler ddim --steps 200 --spacing linspace \
  --device cuda --metrics fid,precision,recall,agreement 2>&1 | grep -E "floor|s=1"
echo "total $((SECONDS - t0)) s"
