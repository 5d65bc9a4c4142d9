# Sourced by the installer/gpu-*.sh device scripts (from the repository root): builds the headless
# CLI against the device's CUDA LibTorch and points the data at $G/data.
# In: G (the carried folder with debs/ and data/), DLAB_CMAKE_EXTRA (more cmake arguments). Out: cli, t0, DLAB_FASHION_MNIST_DIR; gpu-logs/.
mkdir -p gpu-logs "$G/root"
dpkg-deb -x "$G"/debs/nlohmann-json3-dev_*.deb "$G/root"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
t0=$SECONDS
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLAB_BUILD_GUI=OFF -DDLAB_WITH_OPENCV=OFF \
  -DDLAB_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/$G/root/usr" ${DLAB_CMAKE_EXTRA:-} > gpu-logs/configure.log 2>&1 ||
  { tail -30 gpu-logs/configure.log; exit 1; }
cmake --build build-gpu --target diffusionlab-cli -j "$(nproc)" > gpu-logs/build.log 2>&1 ||
  { grep -E "error" -A3 gpu-logs/build.log | head -40; exit 1; }
echo "build $((SECONDS - t0)) s"
cli=build-gpu/app/diffusionlab-cli
export DLAB_FASHION_MNIST_DIR=$PWD/$G/data
