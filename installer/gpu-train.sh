#!/usr/bin/env bash
# Trains the bundled models on the GPU machine with this project's trainer, in one device call:
# builds the headless CLI against CUDA LibTorch, trains the cosine (default) and linear
# Fashion-MNIST models side by side for the same wall-time budget, then the 2-D toy models, and
# copies the model files and logs to $OUT. Needs carry [".gpu"] with .gpu/debs (nlohmann-json,
# from installer/gpu-prepare.sh) and .gpu/data (the Fashion-MNIST .gz files).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/dlab-gpu-out}
MINUTES=${MINUTES:-5.5}
mkdir -p "$OUT" logs
root=$PWD/.gpu/root
mkdir -p "$root"
dpkg-deb -x .gpu/debs/nlohmann-json3-dev_*.deb "$root"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
t0=$SECONDS
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLAB_BUILD_GUI=OFF \
  -DDLAB_WITH_OPENCV=OFF -DDLAB_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$torch_prefix;$root/usr" \
  > logs/configure.log 2>&1 || { tail -30 logs/configure.log; exit 1; }
cmake --build build-gpu --target diffusionlab-cli -j "$(nproc)" > logs/build.log 2>&1 ||
  { grep -E "error" logs/build.log | head -30; exit 1; }
echo "build $((SECONDS - t0)) s"
cli=build-gpu/app/diffusionlab-cli
export DLAB_FASHION_MNIST_DIR=$PWD/.gpu/data
common=(--dataset fashion-mnist --steps 1000000 --batch 128 --lr 3e-4 --warmup 500 --ema 0.9995
        --p-uncond 0.1 --checkpoint-every 5000 --log-every 1000 --device cuda --max-minutes "$MINUTES")
$cli train "${common[@]}" --schedule cosine --out runs/fashion-mnist-cosine > logs/train-cosine.log 2>&1 &
p1=$!
$cli train "${common[@]}" --schedule linear --out runs/fashion-mnist-linear > logs/train-linear.log 2>&1 &
p2=$!
for toy in moons swissroll 8gaussians checkerboard; do
  $cli train --dataset toy:$toy --steps 6000 --batch 1024 --lr 1e-3 --warmup 200 --ema 0.999 \
    --p-uncond 0.1 --checkpoint-every 6000 --log-every 2000 --device cuda --out runs/toy-$toy \
    > logs/train-toy-$toy.log 2>&1
done
wait $p1 $p2
tail -n 3 logs/train-*.log
# The device tool brings back at most 8 files: one archive holds the models, loss logs and logs.
tar czf "$OUT/models.tgz" runs/*/model.safetensors runs/*/loss.csv logs
ls -la "$OUT"
echo "total $((SECONDS - t0)) s"
