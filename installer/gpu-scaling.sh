#!/usr/bin/env bash
# Data-parallel training speed on 1, 2, 4 and 8 GPUs (as many as the machine has), DiffusionLab
# beside PyTorch's own DistributedDataParallel of the same network, in one device call:
#   diffusionlab-cli train --nproc-per-node N   (c10d, NCCL; weak scaling: 128 images per GPU)
#   torchrun --nproc-per-node N bench/train_reference.py   (DDP, the same global batch)
# and once under torchrun itself (--no-python), to check that the environment contract works.
# Needs carry [".gpu-sched"] (debs/ and data/, see installer/gpu-schedules.sh). Run on the
# nvidia-h200-x2/x4/x8 kinds when `status` lends them; on one GPU it measures the 1-GPU row,
# runs the NCCL path as one rank under torchrun and two Gloo ranks sharing the GPU. NOT YET RUN: written in session 8, when only
# the one-GPU kind was lent and the session had 3 minutes of device time.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=.gpu-sched
source installer/gpu-common.sh
OUT=${OUT:-/tmp/dlab-gpu-out}
mkdir -p "$OUT"
grep -E "Distributed training" gpu-logs/configure.log; grep -E "^DLAB_(C10D|GLOO|NCCL)_INCLUDE" build-gpu/CMakeCache.txt
gpus=$(nvidia-smi -L | wc -l)
steps=${1:-300}
echo "== $gpus GPU(s); $steps timed steps after 50 warm-up, 128 images per GPU, fp32"
for n in 1 2 4 8; do
  [ "$n" -le "$gpus" ] || break
  B=$((128 * n))
  rm -rf /tmp/scale-$n
  $cli train --dataset fashion-mnist --steps $((steps + 50)) --batch $B --lr 3e-4 --warmup 50 --ema 0.9995 \
    --log-every 50 --checkpoint-every 1000000 --device cuda --nproc-per-node "$n" --out /tmp/scale-$n \
    > "$OUT/dlab-$n.log" 2>&1
  echo "diffusionlab $n GPU(s), rc=$?: $(awk -F, 'NR > 2 { k++; s += $4 } END { printf "%.0f img/s (mean of %d windows after the first)", s / k, k }' /tmp/scale-$n/loss.csv)"
  grep -E "data-parallel|buckets|error|failed" "$OUT/dlab-$n.log" | head -3
  if [ "$n" -eq 1 ]; then
    python3 bench/train_reference.py --data $G/data --steps "$steps" --warmup-steps 50 --batch $B 2>&1 | tail -n 1
  else
    torchrun --standalone --nproc-per-node "$n" bench/train_reference.py --data $G/data --steps "$steps" \
      --warmup-steps 50 --batch $B 2>&1 | grep -E "img/s|Error" | tail -n 2
  fi
done
ranks=$(( gpus >= 2 ? 2 : 1 ))
echo "== under torchrun (--no-python, $ranks rank(s), NCCL): the environment contract"
rm -rf /tmp/scale-torchrun
torchrun --standalone --nproc-per-node "$ranks" --no-python "$PWD/$cli" train --dataset fashion-mnist --steps 60 --batch 256 \
  --log-every 20 --checkpoint-every 1000 --device cuda --backend nccl --out /tmp/scale-torchrun 2>&1 | tail -n 4
echo "== 2 ranks on one GPU over Gloo (tensors staged through the host)"
rm -rf /tmp/scale-gloo
RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29533 $cli train --dataset fashion-mnist \
  --steps 40 --batch 256 --log-every 20 --checkpoint-every 1000 --device cuda --backend gloo --out /tmp/scale-gloo > "$OUT/gloo0.log" 2>&1 &
RANK=1 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29533 $cli train --dataset fashion-mnist \
  --steps 40 --batch 256 --log-every 20 --checkpoint-every 1000 --device cuda --backend gloo --out /tmp/scale-gloo-1 > "$OUT/gloo1.log" 2>&1
wait $(jobs -p)  # not a bare wait: it would also wait for the LOG tee (bash 5.1+)
tail -n 3 "$OUT/gloo0.log"
