#!/usr/bin/env bash
# The generative trilemma on the GPU machine (device tool, carry [".gpu-tri"]: debs/ with
# nlohmann-json3-dev, data/ with Fashion-MNIST's test split and the first 10,000 training images
# for the real-vs-real floor). Builds the headless CLI and runs `diffusionlab-cli trilemma`: the GAN,
# the VAE prior and DDIM at 1..1000 steps, then DPM-Solver++ at 1..64 steps, same N and seed.
#   installer/gpu-trilemma.sh [N]     (default 10000)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=${GPU_DIR:-.gpu-tri}
source installer/gpu-common.sh || exit 1
OUT=${OUT:-gpu-logs}
n=${1:-10000}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
$cli trilemma --device cuda --count "$n" --samplers ddim --csv "$OUT/trilemma-ddim.csv" --json "$OUT/trilemma-ddim.json" 2>&1 | tee "$OUT/trilemma-ddim.log"
$cli trilemma --device cuda --count "$n" --samplers dpmpp2m --steps 1,2,4,8,16,32,64 --gan "" --autoencoder "" \
  --csv "$OUT/trilemma-dpm.csv" 2>&1 | tee "$OUT/trilemma-dpm.log"
echo "total $((SECONDS - t0)) s"
