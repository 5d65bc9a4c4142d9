#!/usr/bin/env bash
# Video-model ablation on the GPU machine (device tool, carry [".gpu-sched"]; the working tree must
# hold fashion-mnist-classifier): trains several video models side by side on the one GPU, each for
# MINUTES, then scores each against the real clips (256 clips, DDIM 50, s = 3) and keeps 16 sample
# clips of each as tensors. Results: $OUT/video-ablation.tar (logs, eval JSON, clips) and each
# variant's float16 model.
#   installer/gpu-video-ablation.sh MINUTES "NAME:video train options" ["NAME:options" ...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
minutes=$1
shift
res=gpu-logs/video-ablation
rm -rf "$res" && mkdir -p "$res"
for v in "$@"; do
  name=${v%%:*} opts=${v#*:}
  # shellcheck disable=SC2086
  (rm -rf "/tmp/vrun-$name"
   $cli video train --out "/tmp/vrun-$name" --device cuda --steps 1000000 --batch 32 --bf16 --log-every 250 \
     --checkpoint-every 1000000 --max-minutes "$minutes" $opts > "$res/train-$name.log" 2>&1
   $cli video eval --model "/tmp/vrun-$name/model.safetensors" --count 256 --device cuda --json "$res/eval-$name.json" \
     > "$res/eval-$name.log" 2>&1
   $cli video sample --model "/tmp/vrun-$name/model.safetensors" --count 16 --device cuda --tensors "$res/clips-$name.safetensors" \
     > /dev/null 2>&1
   cp "/tmp/vrun-$name/loss.csv" "$res/loss-$name.csv") &
done
wait $(jobs -p)  # not a bare wait: it would also wait for the LOG tee (bash 5.1+)
for v in "$@"; do
  name=${v%%:*}
  echo "== $name: ${v#*:}"; tail -2 "$res/train-$name.log"; sed -n '1,4p' "$res/eval-$name.log"
done
tar -cf "$OUT/video-ablation.tar" -C gpu-logs video-ablation
for v in "$@"; do
  name=${v%%:*}
  $cli convert --in "/tmp/vrun-$name/model.safetensors" --out "$OUT/video-$name.safetensors" --half > /dev/null
done
echo "total $((SECONDS - t0)) s"
