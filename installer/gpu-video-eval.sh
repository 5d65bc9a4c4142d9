#!/usr/bin/env bash
# The bundled video model's figures on the GPU machine (device tool, carry [".gpu-sched"]; the
# working tree must hold fashion-mnist-video and fashion-mnist-classifier): video eval at each
# guidance scale (DDIM 50, COUNT clips; per-frame agreement, consistency, motion, per-frame FID
# against the real clips' floor), and once with DDPM 100 at s = 3. JSON and logs to $OUT.
#   installer/gpu-video-eval.sh [COUNT] [SCALES, comma-separated]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
count=${1:-1000}
IFS=, read -ra scales <<< "${2:-1,3,5}"
for s in "${scales[@]}"; do
  $cli video eval --count "$count" --guidance "$s" --device cuda --json "$OUT/video-eval-s$s.json" 2>&1 | tee -a "$OUT/video-eval.log" | sed -n '2,5p'
done
$cli video eval --count "$((count * 6 / 10))" --guidance 3 --sampler ddpm --steps 100 --device cuda --json "$OUT/video-eval-ddpm.json" 2>&1 |
  tee -a "$OUT/video-eval.log" | sed -n '2,5p'
echo "total $((SECONDS - t0)) s"
