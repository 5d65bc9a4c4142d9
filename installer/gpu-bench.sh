#!/usr/bin/env bash
# One device call that checks and times the CUDA path: builds core, the headless CLI and the core
# tests against CUDA LibTorch, runs the tests on the GPU, compares the trainer's speed with a plain
# PyTorch eager loop of the same network (bench/train_reference.py), benchmarks sampling, and
# checks that a model file gives the same samples on CPU (LibTorch 1.13, made here beforehand into
# .gpu/ref/cpu.safetensors) and on CUDA (LibTorch 2.x), read back with Python's safetensors.
# Needs carry [".gpu"]: .gpu/debs (installer/gpu-prepare.sh), .gpu/data (Fashion-MNIST), .gpu/ref.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/dlab-gpu-out}
mkdir -p "$OUT"
bash installer/gpu-check.sh > "$OUT/gpu-check.log" 2>&1
echo "== gpu-check (build + ctest on the GPU machine), rc=$?"
grep -E "tests passed|Passed|Failed|configure .* build" "$OUT/gpu-check.log"
cli=build-gpu/app/diffusionlab-cli
export DLAB_FASHION_MNIST_DIR=$PWD/.gpu/data
export LD_LIBRARY_PATH=$PWD/.gpu/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "== training speed, same GPU, same network/batch/precision (fp32), one process at a time"
$cli train --dataset fashion-mnist --steps 650 --batch 128 --lr 3e-4 --warmup 50 --ema 0.9995 \
  --log-every 50 --checkpoint-every 100000 --device cuda --out /tmp/speedrun 2>&1 | tail -n 3
awk -F, 'NR > 2 { n++; s += $4 } END { printf "diffusionlab trainer, steps 51-650 (after 50 warm-up steps): mean %.0f img/s over %d windows\n", s / n, n }' /tmp/speedrun/loss.csv
python3 bench/train_reference.py --data .gpu/data --steps 600 --warmup-steps 50 --batch 128 2>&1 | tail -n 2
echo "== sampling benchmark"
$cli bench --model default --device cuda --batches 1,64,256 --iters 50
echo "== CPU (LibTorch 1.13) vs CUDA (LibTorch $(python3 -c 'import torch;print(torch.__version__)')) on the same model file"
$cli sample --model default --sampler ddim --steps 20 --guidance 3 --seed 11 --count 8 \
  --tensors /tmp/cuda.safetensors --device cuda --quiet
python3 - <<'PY'
from safetensors.torch import load_file
from safetensors import safe_open
cpu, gpu = load_file(".gpu/ref/cpu.safetensors"), load_file("/tmp/cuda.safetensors")
d = (cpu["images"] - gpu["images"]).abs()
print(f"images {tuple(cpu['images'].shape)}: max |cpu - cuda| = {d.max().item():.2e}, mean = {d.mean().item():.2e}; labels equal: {bool((cpu['labels'] == gpu['labels']).all())}")
with safe_open("resources/models/fashion-mnist-cosine.safetensors", "pt") as f:
    keys = list(f.keys()); meta = f.metadata()
print(f"Python safetensors reads the bundled model: {len(keys)} tensors, metadata keys {list(meta)}")
PY
echo "== the same, with --deterministic (no TF32, deterministic cuDNN) on CUDA"
$cli sample --model default --sampler ddim --steps 20 --guidance 3 --seed 11 --count 8 \
  --tensors /tmp/cuda-det.safetensors --device cuda --quiet --deterministic
python3 - <<'PY'
from safetensors.torch import load_file
cpu, gpu = load_file(".gpu/ref/cpu.safetensors"), load_file("/tmp/cuda-det.safetensors")
d = (cpu["images"] - gpu["images"]).abs()
print(f"deterministic: max |cpu - cuda| = {d.max().item():.2e}, mean = {d.mean().item():.2e}")
PY
