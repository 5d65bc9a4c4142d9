#!/usr/bin/env bash
# The quality-tier pixel model (issue 18) on the GPU machine. Device tool, carry [".gpu-sched"]
# (debs/ and Fashion-MNIST data/); the working tree must hold fashion-mnist-classifier.
#   installer/gpu-quality.sh train [MINUTES]   trains runs/quality for at most MINUTES (default 7.5),
#       resuming the run already there (calls made back to back find runs/ again on the same
#       machine). The first leg first times 150 steps in float32 and in bf16 autocast and trains
#       in the faster. Ends with a quick check (N = 2000, DDIM 50) and writes the float16 EMA
#       model, its loss log and the logs to $OUT.
#   installer/gpu-quality.sh continue [MINUTES] [STEPS]
#                                               a new run in runs/quality-next from the bundled
#       fashion-mnist-quality (its EMA weights; the optimiser state stays on the machine it ran
#       on, 104 MB, too large to carry), cosine learning-rate decay to 0.1 x over STEPS (default
#       30000) from the peak LR (environment, default 3e-4); call it again to resume it (back to
#       back, same machine), then `eval` with RUN=runs/quality-next. Ends with FID etc. at N = 10,000
#       per DDIM step count in EVAL_STEPS (default 200) and scale in SCALES (default 1); EVAL=0 skips.
#   installer/gpu-quality.sh eval [N]           FID / precision / recall / agreement at N (default
#       10000) per guidance scale (SCALES) and DDIM step count (EVAL_STEPS, default 50) in float32,
#       then the scales BF16_SCALES (empty: skipped) at DDIM 50 under bf16 autocast (issue 17:
#       reduced-precision inference, FID within its noise?), then a bench (BENCH=0 skips). The
#       model: $RUN/model.safetensors, or the bundled one where no run is on the machine. Example,
#       how far more DDIM steps take the bundled model:
#       SCALES=1 EVAL_STEPS="500 1000" BF16_SCALES= BENCH=0 installer/gpu-quality.sh eval
#       An EVAL_STEPS entry is a DDIM step count (trailing spacing) or SAMPLER:STEPS[:SPACING], e.g.
#       EVAL_STEPS="ddim:50:trailing ddim:50:linspace dpmpp2m:50:linspace ddpm:1000"; EVAL_SEED (default 0)
#       is the starting noise's seed.
# The network: UNet base 64, multipliers 1,2,2 (28, 14, 7), two residual blocks per level,
# self-attention at 14 and 7, v-prediction with min-SNR-5 weighting, cosine schedule.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
mode=${1:-train}
run=${RUN:-runs/quality}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
cat > gpu-logs/quality-config.json <<'JSON'
{"network": {"base_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 2, "attention_resolutions": [14, 7],
             "dropout": 0.1}}
JSON
common=(--dataset fashion-mnist --config gpu-logs/quality-config.json --prediction v --min-snr 5 --batch 256
        --lr "${LR:-3e-4}" --warmup 500 --ema 0.9998 --device cuda)
if [ "$mode" = continue ]; then
  run=runs/quality-next
  minutes=${2:-7.5}
  if [ -f "$run/checkpoint.safetensors" ]; then
    echo "== resuming $run"
    $cli train --out "$run" --resume --max-minutes "$minutes" --log-every 500 --checkpoint-every 2000 2>&1 |
      tee -a "$OUT/train-quality-next.log" | grep -E "^step [0-9]*000/|done|rror|train:"
  else
    $cli train "${common[@]}" --init-from resources/models/fashion-mnist-quality.safetensors --lr-decay cosine \
      --lr-final 0.1 --steps "${3:-30000}" --out "$run" --max-minutes "$minutes" --log-every 500 --checkpoint-every 2000 2>&1 |
      tee "$OUT/train-quality-next.log" | grep -E "^step [0-9]*000/|done|rror|train:"
  fi
  $cli convert --in "$run/model.safetensors" --out "$OUT/fashion-mnist-quality.safetensors" --half
  cp "$run/loss.csv" "$OUT/fashion-mnist-quality-next.loss.csv"
  if [ "${EVAL:-1}" = 1 ]; then
    for e in ${EVAL_STEPS:-200}; do
      eval_entry "$e"
      $cli eval --model "$run/model.safetensors" --scales "${SCALES:-1}" --count 10000 --batch 1000 "${eval_opts[@]}" \
        --device cuda --metrics fid,precision,recall,agreement --json "$OUT/quick-eval-$eval_tag.json" 2>&1 |
        tee "$OUT/quick-eval-$eval_tag.log"
    done
  fi
elif [ "$mode" = train ]; then
  minutes=${2:-7.5}
  if [ -f "$run/checkpoint.safetensors" ]; then
    echo "== resuming $run"
    $cli train --out "$run" --resume --steps 400000 --max-minutes "$minutes" --log-every 500 \
      --checkpoint-every 2000 2>&1 | tee -a "$OUT/train-quality.log" | grep -E "^step [0-9]*000/|done|rror|train:"
  else
    echo "== precision probe: 150 steps each, float32 (TF32) and bf16 autocast"
    for p in fp32 bf16; do
      extra=(); [ $p = bf16 ] && extra=(--bf16)
      $cli train "${common[@]}" "${extra[@]}" --steps 150 --warmup 10 --log-every 50 --checkpoint-every 100000 \
        --out /tmp/probe-$p --overwrite > "$OUT/probe-$p.log" 2>&1
      tail -n 1 /tmp/probe-$p/loss.csv | awk -F, -v p=$p '{ printf "%s: %s img/s (steps 101-150)\n", p, $4 }'
    done
    ips() { tail -n 1 /tmp/probe-$1/loss.csv | awk -F, '{ print $4 }'; }
    prec=(); awk -v a="$(ips bf16)" -v b="$(ips fp32)" 'BEGIN { exit !(a > 1.05 * b) }' && prec=(--bf16)
    echo "== training in ${prec[*]:-float32}"
    $cli train "${common[@]}" "${prec[@]}" --out "$run" --steps 400000 --max-minutes "$minutes" --log-every 500 \
      --checkpoint-every 2000 2>&1 | tee "$OUT/train-quality.log" | grep -E "^step [0-9]*000/|done|rror|train:"
  fi
  $cli convert --in "$run/model.safetensors" --out "$OUT/fashion-mnist-quality.safetensors" --half
  cp "$run/loss.csv" "$OUT/fashion-mnist-quality.loss.csv"
  $cli eval --model "$run/model.safetensors" --scales 1,2,3 --count 2000 --batch 1000 --steps 50 --device cuda \
    --metrics fid,precision,recall,agreement --json "$OUT/quick-eval.json" 2>&1 | tee "$OUT/quick-eval.log"
else
  N=${2:-10000}
  model=$run/model.safetensors
  [ -f "$model" ] || { model=resources/models/fashion-mnist-quality.safetensors; echo "== no $run here: the bundled model"; }
  for e in ${EVAL_STEPS:-50}; do
    eval_entry "$e"
    $cli eval --model "$model" --scales "${SCALES:-1,1.5,2,3}" --count "$N" --batch 1000 "${eval_opts[@]}" \
      --seed "${EVAL_SEED:-0}" --device cuda --metrics fid,precision,recall,agreement \
      --json "$OUT/eval-quality-$eval_tag-seed${EVAL_SEED:-0}.json" 2>&1 | tee "$OUT/eval-quality-$eval_tag-seed${EVAL_SEED:-0}.log"
  done
  [ -n "${BF16_SCALES-1.5,3}" ] && $cli eval --model "$model" --scales "${BF16_SCALES:-1.5,3}" --count "$N" --batch 1000 --steps 50 \
    --device cuda --bf16 --metrics fid,precision,recall,agreement --json "$OUT/eval-quality-bf16.json" 2>&1 |
    tee "$OUT/eval-quality-bf16.log"
  [ "${BENCH:-1}" = 1 ] && $cli bench --model "$model" --device cuda --batches 1,256 --iters 50 --bf16 2>&1 | tee "$OUT/bench-quality.log"
fi
echo "total $((SECONDS - t0)) s"
