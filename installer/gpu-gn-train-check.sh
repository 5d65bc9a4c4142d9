#!/usr/bin/env bash
# The training GroupNorm kernel on the latent quality recipe (base 96, 32 groups, 8x8 latents, v
# prediction, min-SNR 5): the same 200 steps with LibTorch's GroupNorm and with the fused one (the
# default), losses side by side and img/s. Device tool, carry [".gpu-sched-eval"]; the tree needs
# fashion-mnist-autoencoder-quality. ~2.5 min with the build.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched-eval}
FUSED=1 LOG=gn-train-check.log
source installer/gpu-common.sh || exit 1
printf '{"network": {"base_channels": 96, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_resolutions": [8, 4], "dropout": 0.1}}\n' > gpu-logs/gn-check.json
for gn in 0 1; do
  DLAB_GN_TRAIN=$gn $cli train --dataset "latents:$PWD/resources/models/fashion-mnist-autoencoder-quality.safetensors" \
    --config gpu-logs/gn-check.json --batch 256 --lr 2e-4 --warmup 50 --prediction v --min-snr 5 --steps ${STEPS:-200} \
    --log-every 50 --checkpoint-every 100000 --device cuda --seed 1 --out /tmp/gn-check-$gn --overwrite > /tmp/gn-check-$gn.log 2>&1 ||
    { echo "DLAB_GN_TRAIN=$gn failed:"; tail -3 /tmp/gn-check-$gn.log; }
  echo -n "DLAB_GN_TRAIN=$gn: "; grep -E "^done" /tmp/gn-check-$gn.log
done
paste -d, /tmp/gn-check-0/loss.csv /tmp/gn-check-1/loss.csv | awk -F, 'NR > 1 { printf "  step %4d: loss %.6f (LibTorch) %.6f (fused)\n", $1, $2, $6 }'
echo "total $((SECONDS - t0)) s"
