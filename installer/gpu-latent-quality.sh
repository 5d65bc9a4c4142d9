#!/usr/bin/env bash
# The quality tier's latent model (issue 18, item 1) on the GPU machine. Device tool, carry
# [".gpu-sched"] (debs/ and Fashion-MNIST data/); the working tree must hold fashion-mnist-classifier
# and fashion-mnist-autoencoder. Calls made back to back find gpu-logs/ and runs/ again.
# The working tree and the carry travel within 64 MiB: move the other bundled models and docs/ aside
# for the call, and carry the data as .xz (GPU_DIR=.gpu-lat: debs/ and xz/*.xz, 26.7 MB; turn them
# back into data/*.gz, which gpu-common.sh does when data/ is missing).
#   installer/gpu-latent-quality.sh ae [MINUTES]
#       a new autoencoder like the bundled one (L1 + 1e-4 KL + 0.02 x classifier features, base 64,
#       4x8x8 latents) trained for MINUTES (default 6; the bundled one had 2.5 and reaches a
#       reconstruction FD of 3.35 against the floor's 2.08, which bounds any latent model's FID);
#       written to $OUT/fashion-mnist-autoencoder-quality.safetensors and kept for `train`, then scored
#       by a round trip of 10,000 training images (eval --through). KL sets its KL weight (1e-4).
#   installer/gpu-latent-quality.sh train [MINUTES] [STEPS]
#       trains runs/latent-quality for at most MINUTES (default 8.5), resuming it when it is there:
#       on the latents of the autoencoder from `ae` when that ran on this machine, else of the
#       bundled one. UNet base $BASE (default 96), multipliers 1-2-2 (8, 4, 2), two residual blocks,
#       attention at 8 and 4, dropout 0.1; v-prediction with min-SNR 5, cosine schedule; AdamW 2e-4,
#       warm-up 500, cosine decay to 0.1 x over STEPS (default auto: as many as a 400-step probe says
#       fit in MINUTES, or TOTAL_MINUTES when later calls resume it); batch 256, EMA 0.9998. Ends with the EMA
#       model as float16 in $OUT and a quick check (N = 2000, DDIM 50, s = 1 and 3).
#       A wider model in one session (installer/gpu-latent-ablation.sh: width is what moves it; a
#       base-144 file, ~66 MB as float16, cannot be carried back for a later session's leg): three
#       device calls back to back on one warm machine, carry [".gpu-lat"] (all 60,000 images):
#         BASE=144 TOTAL_MINUTES=23 installer/gpu-latent-quality.sh train 7.3   (build and probe first;
#                                                                    the decay spans 23 minutes)
#         installer/gpu-latent-quality.sh resume 9.2                 (resumes runs/latent-quality)
#         installer/gpu-latent-quality.sh resume 6.5; S3=0 EVAL_STEPS=ddim:200:linspace installer/gpu-latent-quality.sh eval
#       (each call under the device tool's 10 minutes; the next one within 30 s, while the machine
#       and runs/ are still there). `resume` is `train` that stops with a message where runs/ is gone
#       (a machine given back while idle: session 18's second call started a new 13,009-step run).
#       TRAIN_EXTRA adds options to a new run (e.g. "--latent-norm channel --snr-shift 4").
#   installer/gpu-latent-quality.sh continue [MINUTES] [STEPS]
#       a new run runs/latent-quality-next from the EMA weights of `train` (--init-from), lr 2e-4
#       with a cosine decay to 2e-5 over STEPS (default 21000) in at most MINUTES (default 6.7).
#       The bundled latent-fashion-mnist-quality is train 8.2 (26,028 steps) + continue 6.7 21000, then
#       continue 6.4 20000 on a fresh machine (from the bundled leg-2 weights).
#   installer/gpu-latent-quality.sh eval [N]     (RUN=runs/latent-quality-next for the continued run)
#       FID / precision / recall / agreement at N (default 10000) with DDIM 200 at s = 1 (SCALES and
#       EVAL_STEPS, a list of DDIM step counts or SAMPLER:STEPS[:SPACING] entries, to change), and the agreement at s = 3 (N = 2000, DDIM 50;
#       S3=0 skips it).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
mode=${1:-train}
run=runs/latent-quality
ae=gpu-logs/fashion-mnist-autoencoder-quality.safetensors
[ -f "$ae" ] || ae=resources/models/fashion-mnist-autoencoder-quality.safetensors
# (The device tool brings back at most 8 files: a base-144 model alone is five parts.)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee gpu-logs/gpu.txt
cat > gpu-logs/latent-quality-config.json <<JSON
{"network": {"base_channels": ${BASE:-96}, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_resolutions": [8, 4],
             "dropout": 0.1}}
JSON
# The EMA model as float16 naming its autoencoder by the bundled name (not this machine's path), in
# two parts under the device tool's 16 MiB a file: cat $OUT/latent-q.part-* > latent-fashion-mnist-quality.safetensors
bundle() {
  $cli convert --in "$1" --out /tmp/latent-fashion-mnist-quality.safetensors --half --autoencoder fashion-mnist-autoencoder-quality &&
    split -b 15M /tmp/latent-fashion-mnist-quality.safetensors "$OUT/latent-q.part-"
}
if [ "$mode" = ae ]; then
  $cli train-autoencoder --out gpu-logs/fashion-mnist-autoencoder-quality.safetensors --steps 1000000 --batch 128 \
    --lr 5e-4 --kl-weight "${KL:-1e-4}" --perceptual 0.02 --base-channels 64 --log-every 2000 --max-minutes "${2:-6}" \
    --device cuda 2>&1 | tee "$OUT/ae-quality.log" | grep -E "step|FD|PSNR|rror"
  cp gpu-logs/fashion-mnist-autoencoder-quality.safetensors "$OUT/"
  # Its ceiling for latent models: 10,000 training images round-tripped, scored like samples.
  $cli eval --real-as-samples --through gpu-logs/fashion-mnist-autoencoder-quality.safetensors --count 10000 --device cuda \
    --metrics fid,precision,recall,agreement --json "$OUT/ae-round-trip.json" 2>&1 | tee -a "$OUT/ae-quality.log" | grep -E "floor|round trip"
elif [ "$mode" = train ] || [ "$mode" = resume ]; then
  [ "$mode" = resume ] && [ ! -f "$run/checkpoint.safetensors" ] &&
    { echo "resume: no $run/checkpoint.safetensors on this machine (a fresh one: the earlier calls' run is gone)"; exit 1; }
  if [ -f "$run/checkpoint.safetensors" ]; then
    echo "== resuming $run"
    $cli train --dataset "latents:$PWD/$ae" --out "$run" --resume --max-minutes "${2:-8.5}" --log-every 1000 --checkpoint-every 4000 2>&1 |
      tee -a "$OUT/train-latent-quality.log" | grep -E "^step [0-9]*000/|done|rror|train:|encoded"
  else
    steps=${3:-auto}
    common=(--dataset "latents:$PWD/$ae" --config gpu-logs/latent-quality-config.json --prediction v --min-snr 5
            --batch 256 --lr 2e-4 --warmup 500 --lr-decay cosine --lr-final 0.1 --ema 0.9998 --device cuda ${TRAIN_EXTRA:-})
    if [ "$steps" = auto ]; then
      # As many steps as fit in the leg: the rate of a 400-step probe of the same run (graph included).
      $cli train "${common[@]}" --steps 400 --log-every 50 --out /tmp/latent-probe --overwrite > /tmp/probe.log 2>&1 ||
        { tail -5 /tmp/probe.log; exit 1; }
      steps=$(awk -F, -v m="${TOTAL_MINUTES:-${2:-8.5}}" 'NR > 3 { n++; s += $4 } END { printf "%d", 0.93 * (m * 60 - 25) * s / n / 256 }' \
        /tmp/latent-probe/loss.csv)
      echo "== probe: $(awk -F, 'NR > 3 { n++; s += $4 } END { printf "%.0f", s / n }' /tmp/latent-probe/loss.csv) img/s -> $steps steps"
    fi
    echo "== new run on the latents of $ae, $steps steps"
    $cli train "${common[@]}" --steps "$steps" \
      --out "$run" --max-minutes "${2:-8.5}" --log-every 1000 --checkpoint-every 4000 2>&1 |
      tee "$OUT/train-latent-quality.log" | grep -E "^step [0-9]*000/|done|rror|train:|encoded"
  fi
  bundle "$run/model.safetensors"
  cp "$run/loss.csv" "$OUT/latent-fashion-mnist-quality.loss.csv"
  $cli eval --model "$run/model.safetensors" --scales 1,3 --count 2000 --batch 1000 --steps 50 --device cuda \
    --metrics fid,precision,recall,agreement 2>&1 | tee -a "$OUT/train-latent-quality.log"
elif [ "$mode" = continue ]; then
  # A new run from the EMA weights of `train` (the optimiser restarts), lr 2e-4 decaying to 2e-5 over
  # STEPS; on a fresh machine (no `train` run there) from the bundled latent-fashion-mnist-quality.
  from=$run/model.safetensors
  [ -f "$from" ] || from=resources/models/latent-fashion-mnist-quality.safetensors
  if [ -f "$run-next/checkpoint.safetensors" ]; then
    echo "== resuming $run-next"
    $cli train --out "$run-next" --resume --max-minutes "${2:-6.7}" 2>&1 |
      tee -a "$OUT/train-latent-quality-next.log" | grep -E "^step [0-9]*000/|done|rror|train:"
  else
    echo "== a new run from $from"
    $cli train --dataset "latents:$PWD/$ae" --config gpu-logs/latent-quality-config.json --prediction v --min-snr 5 \
      --batch 256 --lr 2e-4 --warmup 200 --lr-decay cosine --lr-final 0.1 --ema 0.9998 --device cuda ${TRAIN_EXTRA:-} \
      --init-from "$from" --steps "${3:-21000}" --out "$run-next" --max-minutes "${2:-6.7}" \
      --log-every 1000 --checkpoint-every 7000 2>&1 | tee "$OUT/train-latent-quality-next.log" | grep -E "^step [0-9]*000/|done|rror|train:"
  fi
  bundle "$run-next/model.safetensors"
  cp "$run-next/loss.csv" "$OUT/latent-fashion-mnist-quality-next.loss.csv"
else
  N=${2:-10000}
  run=${RUN:-$run}
  # No run on this machine: the bundled model (its own autoencoder reference resolves in the tree).
  [ -f "$run/model.safetensors" ] || { mkdir -p /tmp/lq-bundled && cp resources/models/latent-fashion-mnist-quality.safetensors \
    /tmp/lq-bundled/model.safetensors && run=/tmp/lq-bundled; }
  for e in ${EVAL_STEPS:-200}; do
    eval_entry "$e"
    $cli eval --model "$run/model.safetensors" --scales "${SCALES:-1}" --count "$N" --batch 1000 "${eval_opts[@]}" --device cuda \
      --metrics fid,precision,recall,agreement --json "$OUT/eval-latent-quality-$eval_tag.json" 2>&1 |
      tee "$OUT/eval-latent-quality-$eval_tag.log"
  done
  [ "${S3:-1}" = 1 ] && $cli eval --model "$run/model.safetensors" --scales 3 --count 2000 --batch 1000 --steps 50 --device cuda \
    --metrics fid,precision,recall,agreement 2>&1 | tee "$OUT/eval-latent-quality-s3.log"
fi
echo "total $((SECONDS - t0)) s"
