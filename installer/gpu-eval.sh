#!/usr/bin/env bash
# One device call: trains the Fashion-MNIST classifier with this project's CLI, then measures the
# class agreement and Frechet distance (classifier features) of 10,000 samples per guidance scale
# for the bundled cosine (default) and linear models, next to the train-vs-test floor.
# Needs carry [".gpu"] with .gpu/debs and .gpu/data. Results come back in $OUT/eval.tgz.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/dlab-gpu-out}
mkdir -p "$OUT" eval
root=$PWD/.gpu/root
mkdir -p "$root"
dpkg-deb -x .gpu/debs/nlohmann-json3-dev_*.deb "$root"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
t0=$SECONDS
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLAB_BUILD_GUI=OFF -DDLAB_WITH_OPENCV=OFF \
  -DDLAB_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$torch_prefix;$root/usr" > eval/configure.log 2>&1
cmake --build build-gpu --target diffusionlab-cli -j "$(nproc)" > eval/build.log 2>&1 || { grep error eval/build.log | head; exit 1; }
echo "build $((SECONDS - t0)) s"
cli=build-gpu/app/diffusionlab-cli
export DLAB_FASHION_MNIST_DIR=$PWD/.gpu/data
$cli train-classifier --out eval/fashion-mnist-classifier.safetensors --epochs 10 --batch 128 --lr 1e-3 \
  --device cuda 2>&1 | tee eval/classifier.log
for m in fashion-mnist-cosine fashion-mnist-linear; do
  $cli eval --model $m --classifier eval/fashion-mnist-classifier.safetensors --count 10000 \
    --scales 0,1,3 --sampler ddim --steps 50 --batch 1000 --device cuda --json eval/$m.json 2>&1 | tee eval/eval-$m.log
done
tar czf "$OUT/eval.tgz" eval/*.safetensors eval/*.json eval/*.log
echo "total $((SECONDS - t0)) s"
