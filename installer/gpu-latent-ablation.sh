#!/usr/bin/env bash
# Which change moves the latent quality model (issue 18, item 1)? Three latent UNets trained side by
# side on one GPU for the same wall-clock budget from scratch, on the latents of the bundled
# fashion-mnist-autoencoder-quality, then scored alike (DDIM 200 linspace, s = 1, N = 10,000):
#   control  the bundled recipe: base 96, v-prediction, min-SNR 5, dropout 0.1
#   eps      the same network predicting the noise, uniform weighting (the LDM recipe)
#   wide     the bundled recipe at base ${WIDE:-144} (capacity)
#   w128     the bundled recipe at base 128
#   deep     the bundled recipe with three residual blocks a level instead of two
#   scaled   the bundled recipe on the scaled-linear schedule (LDM's for latents; at T = 1000 its SNR
#            is ~0.37x the cosine one's through the middle steps, but it ends at SNR 0.0047, not ~0)
#   linear   the bundled recipe on the linear schedule (DDPM's)
#   b1024    the bundled recipe at batch 1024 and learning rate 4e-4 (the same wall-clock time sees
#            more images if the GPU is not saturated at 256)
#   perchan  the bundled recipe on latents normalised per channel (--latent-norm channel: each of
#            the 4 channels to mean 0, std 1; with the one global factor their stds are 0.70, 1.18,
#            0.49 and 0.75 and their means differ: the third sees a quarter of the nominal SNR)
#   vplain   v-prediction without min-SNR weighting (plain v MSE: the low-noise steps, which min-SNR 5
#            scales down by 5 / (SNR + 1), weigh as much as the rest; in latent space a small error
#            there is a whole 4x4 pixel patch after the decoder)
#   snrgF    the bundled recipe with min-SNR gamma F instead of 5 (snrg20: more weight at low noise)
#   shiftF   the bundled recipe with the cosine schedule's SNR multiplied by F at every t
#            (--snr-shift F: shift4 keeps more signal at every step, shift0.25 less)
# VARIANTS picks them (default "control eps wide"). Each run's step count is STEPS when set, else
# what a side-by-side 300-step probe says fits in MINUTES (default 6). Device tool, carry
# [".gpu-sched-eval"] (GPU_DIR); the tree needs fashion-mnist-classifier and
# fashion-mnist-autoencoder-quality.
#   [VARIANTS="control w128 deep"] [STEPS=5000] installer/gpu-latent-ablation.sh [MINUTES]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched-eval}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
ae=${AE:-resources/models/fashion-mnist-autoencoder-quality.safetensors}  # AE=FILE: another autoencoder's latents
minutes=${1:-6}
read -r -a names <<< "${VARIANTS:-control eps wide}"
for n in "${names[@]}"; do
  base=96 blocks=2
  case $n in
    control|eps|scaled|linear|shift*|b1024|perchan|vplain|snrg*) ;;
    wide) base=${WIDE:-144} ;;
    w128) base=128 ;;
    deep) blocks=3 ;;
    *) echo "unknown variant $n"; exit 1 ;;
  esac
  printf '{"network": {"base_channels": %d, "channel_mult": [1, 2, 2], "num_res_blocks": %d, "attention_resolutions": [8, 4], "dropout": 0.1}}\n' \
    $base $blocks > gpu-logs/ablation-$n.json
done
batch_of() { [ "$1" = b1024 ] && echo 1024 || echo 256; }
opts() {
  local n=$1
  echo --dataset "latents:$PWD/$ae" --config gpu-logs/ablation-$n.json --batch $(batch_of $n) --lr $([ $n = b1024 ] && echo 4e-4 || echo 2e-4) --warmup 500 --lr-decay cosine \
    --lr-final 0.1 --ema 0.9998 --device cuda --seed 1
  case $n in
    eps) echo --prediction eps ;;
    vplain) echo --prediction v ;;
    snrg*) echo --prediction v --min-snr "${n#snrg}" ;;
    *) echo --prediction v --min-snr 5 ;;
  esac
  case $n in
    scaled) echo --schedule scaled-linear ;;
    linear) echo --schedule linear ;;
    shift*) echo --schedule cosine --snr-shift "${n#shift}" ;;
    perchan) echo --schedule cosine --latent-norm channel ;;
    *) echo --schedule cosine ;;
  esac
}
declare -A steps
if [ -n "${STEPS:-}" ]; then
  for n in "${names[@]}"; do steps[$n]=$STEPS; done
else
  echo "== probe: 300 steps of each, side by side"
  for n in "${names[@]}"; do
    $cli train $(opts $n) --steps 300 --log-every 50 --out /tmp/probe-$n --overwrite > /tmp/probe-$n.log 2>&1 &
  done
  wait $(jobs -p)  # not a bare wait: it would also wait for the LOG tee (bash 5.1+)
  for n in "${names[@]}"; do
    rate=$(awk -F, 'NR > 3 { k++; s += $4 } END { printf "%.0f", s / k }' /tmp/probe-$n/loss.csv)
    steps[$n]=$(awk -v r="$rate" -v m="$minutes" -v b="$(batch_of $n)" 'BEGIN { printf "%d", 0.9 * (m * 60 - 30) * r / b }')
    echo "$n: $rate img/s side by side -> ${steps[$n]} steps"
  done
fi
echo "== training, side by side, $minutes minutes"
for n in "${names[@]}"; do
  $cli train $(opts $n) --steps ${steps[$n]} --max-minutes "$minutes" --log-every 1000 --checkpoint-every 100000 \
    --out runs/ablation-$n --overwrite > /tmp/ablation-train-$n.log 2>&1 &
done
wait $(jobs -p)  # not a bare wait: it would also wait for the LOG tee (bash 5.1+)
echo "trained $((SECONDS - t0)) s"
for n in "${names[@]}"; do
  grep -E "done|rror|parameters" /tmp/ablation-train-$n.log | tail -3
  $cli eval --model runs/ablation-$n/model.safetensors --scales 1 --count 10000 --batch 1000 --steps 200 --spacing linspace \
    --device cuda --metrics fid,precision,recall,agreement --json "$OUT/ablation-eval-$n.json" 2>&1 |
    tee "$OUT/ablation-eval-$n.log" | grep -E "s=1.00|floor" | sed "s/^/$n /"
done
echo "total $((SECONDS - t0)) s"
