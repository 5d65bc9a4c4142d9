#!/usr/bin/env bash
# cuDNN's algorithm search on the GPU machine (issue 17): the guided forward pass at batch 1 and 256
# and training at batch 128 with DLAB_CUDNN_BENCHMARK=1 and 0 (off, the default: LibTorch's
# heuristic pick), alternated, then the PyTorch peers of the same network in the same call
# (bench/sample_reference.py: CUDA graph and torch.compile reduce-overhead at batch 256;
# bench/train_reference.py compile-ro at batch 128); then whole DDIM-50 chains (bench --chain).
# Device tool, carry [".gpu-sched-eval"] (or GPU_DIR with debs/ and data/); the tree needs
# fashion-mnist-cosine.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-sched-eval}
FUSED=1
source installer/gpu-common.sh || exit 1
echo "== 1. guided forward pass (ms), cuDNN benchmark on / off alternated twice"
for round in 1 2; do
  for b in 1 0; do
    DLAB_CUDNN_BENCHMARK=$b $cli bench --model default --device cuda --batches 1,256 --iters 100 2>&1 | tail -n 4
  done
done
(cd bench && timeout 200 python3 sample_reference.py --batches 256 --iters 100 --variants graph,compile-ro) 2>&1 |
  grep -v "Warning\|warn"
echo "== 2. training, batch 128, cuDNN benchmark on / off"
for b in 1 0 1; do
  DLAB_CUDNN_BENCHMARK=$b $cli train --dataset fashion-mnist --steps 650 --batch 128 --lr 3e-4 --warmup 50 --ema 0.9995 \
    --log-every 50 --checkpoint-every 100000 --device cuda --out /tmp/cspeed --overwrite > /tmp/cspeed.log 2>&1 ||
    tail -3 /tmp/cspeed.log
  awk -F, -v b=$b 'NR > 2 { n++; s += $4 } END { printf "DLAB_CUDNN_BENCHMARK=%s: %.0f img/s\n", b, s / n }' /tmp/cspeed/loss.csv
done
timeout 200 python3 bench/train_reference.py --data "$G/data" --steps 600 --warmup-steps 50 --batch 128 --mode compile-ro 2>&1 |
  tail -n 1
echo "== 3. whole guided DDIM-50 chains (whole call and steps 2-49)"
$cli bench --model default --device cuda --batches 1,256 --iters 50 --chain 2>&1 | tail -n 20
echo "total $((SECONDS - t0)) s"
