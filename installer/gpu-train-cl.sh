#!/usr/bin/env bash
# Channels-last training (issue 17: training at 0.72x of torch.compile reduce-overhead). Device tool,
# carry [".gpu-lat"] or any folder with debs/ and the Fashion-MNIST data (GPU_DIR), ~7 min:
#  1. bench --check-fused: the training GroupNorm in both layouts against float64 autograd;
#  2. the same 60-step run plain and channels-last (DLAB_TRAIN_CHANNELS_LAST=0/1): losses side by
#     side, and the two runs' saved EMA weights compared (bench/compare_weights.py);
#  3. the kernels of 30 channels-last steps (DLAB_PROFILE_STEPS);
#  4. img/s (default network, batch 128, float32/TF32, graphed) plain and channels-last alternated
#     ROUNDS times (default 2; EXTRA_MODES: more settings, "VAR=value,VAR=value" each), beside the peer (bench/train_reference.py, torch.compile
#     reduce-overhead, in the plain layout every round and channels-last in the first) in the same call.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-lat}
FUSED=1 LOG=${LOG:-train-cl.log}
source installer/gpu-common.sh || exit 1
train_args() {
  args=(train --dataset fashion-mnist --steps "$1" --batch 128 --warmup 10 --log-every "${3:-10}" --checkpoint-every 100000
        --device cuda --out "$2" --overwrite)
}
# The img/s of a run's log windows after the first (the peer's figure also leaves out its first 50
# steps): steady DIR
steady() {
  awk -F, 'NR > 2 { img += 100 * 128; secs += 100 * 128 / $4 } END { if (secs > 0) printf "%.0f", img / secs }' "$1/loss.csv"
}
echo "== 1. the training GroupNorm, both layouts"
$cli bench --check-fused --device cuda > "$OUT/check-fused-train-cl.log" 2>&1
echo "check-fused rc=$?: $(grep -c ' ok' "$OUT/check-fused-train-cl.log") ok, $(grep -c WRONG "$OUT/check-fused-train-cl.log") WRONG"
grep -E "^training|^channel sums|WRONG" "$OUT/check-fused-train-cl.log" | cut -c1-260
echo "== 2. the same 60 steps, plain and channels-last"
for cl in 0 1; do
  train_args 60 /tmp/eq-cl$cl
  DLAB_TRAIN_CHANNELS_LAST=$cl $cli "${args[@]}" > /tmp/eq-cl$cl.log 2>&1 || { echo "train failed:"; tail -3 /tmp/eq-cl$cl.log; }
done
paste -d, /tmp/eq-cl0/loss.csv /tmp/eq-cl1/loss.csv | awk -F, 'NR > 1 { printf "  step %4d: loss %.6f (plain) %.6f (channels-last)\n", $1, $2, $6 }'
python3 bench/compare_weights.py /tmp/eq-cl0/model.safetensors /tmp/eq-cl1/model.safetensors
echo "== 3. the kernels of 30 channels-last steps"
train_args 60 /tmp/prof-run
DLAB_PROFILE_STEPS=30 $cli "${args[@]}" 2>&1 | grep -vE "^step|^training|^done" | head -32
echo "== 4. img/s, alternated, beside the peer"
peer() {
  echo -n "peer compile-ro $*: "
  (cd bench && timeout 240 python3 train_reference.py --data "$DLAB_FASHION_MNIST_DIR" --mode compile-ro --steps 600 "$@") 2>&1 |
    grep -E "img/s|rror" | tail -1
}
modes=("DLAB_TRAIN_CHANNELS_LAST=0" "DLAB_TRAIN_CHANNELS_LAST=1" ${EXTRA_MODES:-})
for ((r = 1; r <= ${ROUNDS:-2}; r++)); do
  for m in "${modes[@]}"; do
    train_args 600 /tmp/speed 100
    echo -n "DiffusionLab graphed, ${m//,/ }: "
    env ${m//,/ } $cli "${args[@]}" 2>&1 | grep -E "^done|rror" | tr -d '\n'
    echo "; after the first 100 steps $(steady /tmp/speed) img/s"
  done
  peer
  [ "$r" = 1 ] && peer --channels-last
done
echo "total $((SECONDS - t0)) s"
