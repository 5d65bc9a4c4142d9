#!/usr/bin/env bash
# Builds the engine and the headless CLI against the GPU machine's CUDA LibTorch (2.x, from its
# PyTorch) and runs the core tests there on the GPU. Repeat it with the device tool:
#   installer/gpu-prepare.sh            # here: fetch the .debs it needs into .gpu/ (ignored)
#   run: bash installer/gpu-check.sh    # there, with carry [".gpu"]
# The GPU machine has no Qt: the Qt Core/Test libraries and headers (for the Qt Test executables)
# and the header-only nlohmann-json travel as Debian .debs unpacked into .gpu/root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/dlab-gpu-out}
mkdir -p "$OUT"
t0=$SECONDS

root=$PWD/.gpu/root
if [ ! -d "$root/usr" ]; then
  mkdir -p "$root"
  for d in .gpu/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
  # Qt's CMake files check that every tool they import exists (qmake, androiddeployqt, ...); only
  # moc and the automoc parser are run, so the others that the carried .debs lack get placeholders.
  grep -ho '"${_IMPORT_PREFIX}/[^"]*"' "$root"/usr/lib/x86_64-linux-gnu/cmake/Qt6*/*Targets-*.cmake |
    sed 's/"${_IMPORT_PREFIX}\///; s/"$//' | sort -u | while read -r f; do
      [ -e "$root/usr/$f" ] || { mkdir -p "$(dirname "$root/usr/$f")"; : > "$root/usr/$f"; }
    done
fi
libdir=$root/usr/lib/x86_64-linux-gnu
# Use the carried GLib only where the machine has none (two GLibs in one process conflict).
if ldconfig -p | grep -q 'libglib-2.0.so.0 '; then rm -f "$libdir"/libglib-2.0.so* "$libdir"/libgthread-2.0.so*; fi
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# The trainer tests read Fashion-MNIST: the carried copy where the machine has none.
[ -d .gpu/data ] && export DLAB_FASHION_MNIST_DIR=$PWD/.gpu/data

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda)'

cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DDLAB_BUILD_GUI=OFF -DDLAB_WITH_OPENCV=OFF -DDLAB_BUILD_TESTS=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$root/usr" -DQT_HOST_PATH="$root/usr" \
  -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
t_cfg=$SECONDS
cmake --build build-gpu -j "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
t_build=$SECONDS
ctest --test-dir build-gpu --output-on-failure 2>&1 | tee "$OUT/ctest.log"
build-gpu/app/diffusionlab-cli info --device cuda | tee "$OUT/info.txt"
echo "configure $((t_cfg - t0)) s, build $((t_build - t_cfg)) s, total $((SECONDS - t0)) s"
