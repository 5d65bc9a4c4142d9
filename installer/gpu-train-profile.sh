#!/usr/bin/env bash
# Where a training step's GPU time goes, and the training GroupNorm kernel (issue 17: training at
# 0.72x of torch.compile reduce-overhead, docs/eval/train-profile-h200.log). Device tool, carry [".gpu-sched-eval"] or any folder with
# debs/ and Fashion-MNIST data (GPU_DIR), ~5 min:
#  1. the training GroupNorm (fused_ops.h: fused_group_norm_act_train; DLAB_GN_TRAIN=0 turns it off):
#     bench --check-fused (its output and gradients against float64 autograd), then the same
#     60-step run with and without it (losses side by side);
#  2. DiffusionLab's step (default network, batch 128, float32/TF32) under its own kernel profile
#     (DLAB_PROFILE_STEPS: LibTorch's Kineto, graph replays included; Nsight Compute needs hardware
#     counters that some machines refuse): graphed with LibTorch's GroupNorm, graphed with the
#     fused one, and eager; each table also says how busy the GPU was;
#  3. img/s alternated (graphed, DLAB_GN_TRAIN=0/1, twice) beside the peer
#     (bench/train_reference.py, torch.compile reduce-overhead) in the same call; PEER_PROFILE=1 also
#     prints the peer's torch.profiler tables (eager and compile-ro).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched-eval}
FUSED=1 LOG=train-profile.log
source installer/gpu-common.sh || exit 1
# The default network, batch 128, from scratch: train_args STEPS OUT-DIR
train_args() {
  args=(train --dataset fashion-mnist --steps "$1" --batch 128 --warmup 10 --log-every 10 --checkpoint-every 100000
        --device cuda --out "$2" --overwrite)
}
# profile LABEL [VAR=value ...]: the kernels of 30 steps after 30 warm ones.
profile() {
  local label=$1
  shift
  echo "-- $label"
  train_args 60 /tmp/prof-run
  env DLAB_PROFILE_STEPS=30 "$@" $cli "${args[@]}" 2>&1 | grep -vE "^step|^training|^done"
}
echo "== 1. the training GroupNorm kernel"
$cli bench --check-fused --device cuda 2>&1 | grep -E "^training|WRONG|rror" || echo "CHECK FAILED"
for gn in 0 1; do
  train_args 60 /tmp/eq-gn$gn
  DLAB_GN_TRAIN=$gn $cli "${args[@]}" > /tmp/eq-gn$gn.log 2>&1 || { echo "train failed:"; tail -3 /tmp/eq-gn$gn.log; }
done
paste -d, /tmp/eq-gn0/loss.csv /tmp/eq-gn1/loss.csv | awk -F, 'NR > 1 { printf "  step %4d: loss %.6f (LibTorch) %.6f (fused)\n", $1, $2, $6 }'
echo "== 2. DiffusionLab's kernels, batch 128"
profile "graphed, LibTorch's GroupNorm" DLAB_GN_TRAIN=0
profile "graphed, fused training GroupNorm" DLAB_GN_TRAIN=1
profile "eager, LibTorch's GroupNorm" DLAB_GN_TRAIN=0 DLAB_CUDA_GRAPHS=0
echo "== 3. img/s, alternated, beside the peer"
for r in 1 2; do
  for gn in 0 1; do
    train_args 600 /tmp/speed-gn$gn
    echo -n "DiffusionLab graphed, DLAB_GN_TRAIN=$gn: "
    DLAB_GN_TRAIN=$gn $cli "${args[@]}" 2>&1 | grep -E "^done|rror"
  done
  echo -n "peer compile-ro: "
  (cd bench && timeout 200 python3 train_reference.py --data "$DLAB_FASHION_MNIST_DIR" --mode compile-ro --steps 600) 2>&1 |
    grep -E "img/s|rror" | tail -1
done
if [ "${PEER_PROFILE:-0}" = 1 ]; then
  echo "== 4. the peer under torch.profiler"
  for m in eager compile-ro; do
    (cd bench && timeout 200 python3 train_reference.py --data "$DLAB_FASHION_MNIST_DIR" --mode $m --steps 200 --profile 20) 2>&1 |
      grep -v "Warning\|warn"
  done
fi
echo "total $((SECONDS - t0)) s"
