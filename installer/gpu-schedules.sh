#!/usr/bin/env bash
# Cosine against linear on the GPU machine (issue 18): `diffusionlab-cli compare-schedules` with six
# runs (2 schedules x 3 seeds) of the bundled default's network at one budget, run side by side as
# separate processes on the one GPU. Two device calls, since one call may last 10 minutes and the
# machine (with the run folders) goes back when idle:
#   installer/gpu-schedules.sh train [STEPS]   carry [".gpu-sched"]: debs/ (nlohmann-json3-dev) and
#       data/ (Fashion-MNIST train and test, 30 MB). Trains the six runs (3000 steps: 245 s on an
#       H200) and brings back their six model files.
#   installer/gpu-schedules.sh eval [STEPS] [N]   carry [".gpu-sched-eval"]: debs/, data/ (the test
#       split) and runs/compare-schedules-STEPS/<schedule>-seed<k>/{model.safetensors,done.json}
#       from the train call. FID / precision / recall / agreement at s = 0, 1, 2 (DDIM 50, N per
#       scale; about 130 s per single-pass scale with six side by side) and the exact per-timestep
#       noise loss and bound on 1000 test images, then the report. An evaluation stopped at the time
#       limit keeps its finished scales (eval.json) and continues where it stopped.
# The working tree travels too and the whole is capped at 64 MiB: for the train call, move the
# bundled models it does not read (latent, GAN, autoencoder) out of the checkout and back afterwards.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
what=${1:-train}
steps=${2:-3000}
n=${3:-10000}
G=${GPU_DIR:-$([ "$what" = train ] && echo .gpu-sched || echo .gpu-sched-eval)}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
runs=$G/runs/compare-schedules-$steps
logs=gpu-logs/schedules
mkdir -p "$logs" "$runs"
common=(--out "$runs" --steps "$steps" --count "$n" --device cuda)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$logs/0-gpu.txt"
t1=$SECONDS
if [ "$what" = train ]; then
  for s in linear cosine; do
    for k in 1 2 3; do
      $cli compare-schedules "${common[@]}" --phase train --only "$s:$k" --max-minutes 7 > "$logs/1-train-$s-$k.log" 2>&1 &
    done
  done
  wait $(jobs -p)  # not a bare wait: it would also wait for the LOG tee (bash 5.1+)
  echo "train: 6 runs side by side, $((SECONDS - t1)) s" | tee "$logs/1-train.txt"
  for s in linear cosine; do
    for k in 1 2 3; do cp "$runs/$s-seed$k/model.safetensors" "$OUT/$s-seed$k.safetensors"; done
  done
  tail -n +1 "$logs"/* "$runs"/*/done.json > "$OUT/schedules-$steps-train.log"
else
  for s in linear cosine; do
    for k in 1 2 3; do
      $cli compare-schedules "${common[@]}" --phase eval --only "$s:$k" > "$logs/2-eval-$s-$k.log" 2>&1 &
    done
  done
  wait $(jobs -p)  # not a bare wait: it would also wait for the LOG tee (bash 5.1+)
  echo "eval: 6 runs side by side, $((SECONDS - t1)) s" | tee "$logs/2-eval.txt"
  grep -h "^eval\|error" "$logs"/2-eval-*.log
  $cli compare-schedules "${common[@]}" --phase report --csv "$OUT/schedules-$steps.csv" \
    --curves-csv "$OUT/schedules-$steps-curves.csv" --json "$OUT/schedules-$steps.json" 2>&1 | tee "$logs/3-report.log"
  tail -n +1 "$logs"/* > "$OUT/schedules-$steps-eval.log"
fi
echo "total $((SECONDS - t0)) s"
