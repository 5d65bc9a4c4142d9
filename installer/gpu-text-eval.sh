#!/usr/bin/env bash
# Prompt-following of the bundled text-to-image model on the GPU machine (device tool, carry
# [".gpu-sched"]; the working tree must hold fashion-mnist-text, -clip and -classifier): eval
# --prompts on resources/prompts/fashion-held-out.txt at several guidance scales, with static
# clipping and with dynamic thresholding. JSON and logs to $OUT.
#   installer/gpu-text-eval.sh [COUNT_PER_PROMPT] [SCALES]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
count=${1:-500}
scales=${2:-1,3,5,8}
for dyn in 0 0.995; do
  $cli eval --prompts resources/prompts/fashion-held-out.txt --model fashion-mnist-text --count "$count" \
    --scales "$scales" --dynamic-threshold "$dyn" --device cuda --json "$OUT/text-eval-$dyn.json" 2>&1 | tee "$OUT/text-eval-$dyn.log"
done
echo "eval total $((SECONDS - t0)) s"
