#!/usr/bin/env bash
# The CUDA path after a change to core, on the GPU machine (device tool, carry [".gpu-smoke"] made
# by: mkdir -p .gpu-smoke/{debs,data}; apt-get download nlohmann-json3-dev into debs; the t10k
# Fashion-MNIST files into data). Builds the headless CLI against CUDA LibTorch 2.x and runs
# sampling, training, resume and the hardening checks on the GPU; prints a short table last.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-smoke}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
results=()
check() {  # check NAME EXPECTED_EXIT COMMAND...: runs it, keeps its output, notes the result
  local name=$1 want=$2; shift 2
  local t=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  results+=("$(printf '%-28s exit %-3s (want %s) %4ss  %s' "$name" "$rc" "$want" "$((SECONDS - t))" \
    "$( [ "$rc" = "$want" ] && echo ok || echo FAILED)")")
  tail -2 "$OUT/$name.log"
}
check info 0 $cli info --device cuda
check sample-default 0 $cli sample --device cuda --count 256 --steps 50 --tensors "$OUT/s.safetensors" --quiet
check sample-latent 0 $cli sample --device cuda --model latent-fashion-mnist --count 256 --steps 50 --tensors "$OUT/l.safetensors" --quiet
rm -rf "$OUT/run"
check train-toy 0 $cli train --dataset toy:moons --device cuda --steps 300 --log-every 100 --checkpoint-every 100 --out "$OUT/run"
check train-again-refused 1 $cli train --dataset toy:moons --device cuda --steps 300 --out "$OUT/run"
check resume-other-schedule 1 $cli train --dataset toy:moons --device cuda --steps 400 --out "$OUT/run" --resume --schedule linear
check resume 0 $cli train --dataset toy:moons --device cuda --steps 400 --log-every 100 --out "$OUT/run" --resume
# GPU out of memory. Sampling: a batch far beyond the device is refused by the memory budget
# before anything is allocated (the size tried and the size that fits); one the budget lets through
# but the device cannot hold is caught as out-of-memory with a smaller batch proposed.
check sample-budget 1 $cli sample --device cuda --count 100000 --batch 100000 --steps 2 --tensors "$OUT/oom.safetensors" --quiet
grep -iE "memory|fits|fewer" "$OUT/sample-budget.log" | head -2 | cut -c1-300
check sample-big 0 $cli sample --device cuda --count 20000 --batch 20000 --steps 2 --tensors /tmp/big.safetensors --quiet
tail -1 "$OUT/sample-big.log" | cut -c1-300
# (The carried data holds the 10,000 test images only: they stand in for the training split.)
mkdir -p "$G/fm-data"
for f in images-idx3-ubyte.gz labels-idx1-ubyte.gz; do ln -sf "$PWD/$G/data/t10k-$f" "$G/fm-data/train-$f"; done
export DLAB_FASHION_MNIST_DIR=$PWD/$G/fm-data
# Training: a Fashion-MNIST run with a checkpoint, then resumed with batches the device cannot take:
# each stops with a message, the checkpoint is the same bytes, and a normal resume goes on from it.
rm -rf "$OUT/fm"
check train-fm 0 $cli train --dataset fashion-mnist --size large --device cuda --steps 200 --batch 128 --log-every 100 --checkpoint-every 100 --out "$OUT/fm"
sum_before=$(sha256sum "$OUT/fm/checkpoint.safetensors" | cut -c1-16)
check train-budget 1 $cli train --dataset fashion-mnist --device cuda --steps 400 --batch 65536 --out "$OUT/fm" --resume
grep -iE "memory|fewer" "$OUT/train-budget.log" | head -2 | cut -c1-300
check train-oom 1 $cli train --dataset fashion-mnist --device cuda --steps 400 --batch 20000 --out "$OUT/fm" --resume
grep -iE "memory|checkpoint" "$OUT/train-oom.log" | head -2 | cut -c1-300
sum_after=$(sha256sum "$OUT/fm/checkpoint.safetensors" | cut -c1-16)
echo "checkpoint sha256 before $sum_before after $sum_after"
results+=("$(printf '%-28s %s' checkpoint-kept "$([ "$sum_before" = "$sum_after" ] && echo ok || echo FAILED)")")
check train-fm-resume 0 $cli train --dataset fashion-mnist --device cuda --steps 300 --batch 128 --log-every 100 --out "$OUT/fm" --resume
tail -1 "$OUT/fm/loss.csv"
echo
printf '%s\n' "${results[@]}"
echo "total $((SECONDS - t0)) s"
