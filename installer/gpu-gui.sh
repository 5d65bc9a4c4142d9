#!/usr/bin/env bash
# The GUI on the GPU machine (issue 17, item 5): the real `diffusionlab` binary, built there against
# the machine's CUDA LibTorch without OpenCV (DLAB_WITH_OPENCV=OFF: images through Qt), played
# offscreen on CUDA, with the worker's time to first frame, the chain's frame rate and the GUI's
# longest stall (`--bench-stall`) and a screenshot.
#   installer/gpu-gui.sh prepare   here (Debian 12 with installer/setup-debian.sh done): packs Qt 6
#       (headers, CMake files, moc/rcc/uic, the offscreen platform plugin), QCustomPlot, the GL
#       headers Qt's CMake files ask for, nlohmann-json, DejaVu fonts and the shared libraries all of
#       them need (not glibc) into .gpu-gui/sysroot.tar.xz (about 25 MB).
#   installer/gpu-gui.sh [MODEL]   on the GPU machine, device tool carry [".gpu-gui"]; the working
#       tree must hold MODEL (default fashion-mnist-quality); move the other large models away first.
#       DEVICES (default "cuda cpu cuda"): the --bench-stall runs of MODEL; SHOT=0 skips the screenshot.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
G=.gpu-gui
if [ "${1:-}" = prepare ]; then
  mkdir -p "$G"
  pkgs=(qt6-base-dev qt6-base-dev-tools libqcustomplot-dev libgl-dev libglx-dev libopengl-dev
        libegl-dev nlohmann-json3-dev fonts-dejavu-core)
  list=$(mktemp)
  for p in "${pkgs[@]}"; do dpkg -L "$p" 2>/dev/null || echo "missing package $p" >&2; done |
    while read -r f; do [ -f "$f" ] || [ -L "$f" ] && echo "$f"; done > "$list"
  A=/usr/lib/x86_64-linux-gnu
  extra=("$A"/qt6/plugins/platforms/libqoffscreen.so "$A"/qt6/plugins/imageformats/*.so "$A"/qt6/plugins/iconengines/*.so
         "$A"/libQCustomPlotQt6.so* "$A"/libGL.so.1* /usr/lib/qt6/libexec/{moc,rcc,uic})
  for m in Core Gui Widgets PrintSupport Test DBus OpenGL OpenGLWidgets Svg; do extra+=("$A"/libQt6$m.so.6*); done
  printf '%s\n' "${extra[@]}" >> "$list"
  # Not needed here: the Qt 5 build of QCustomPlot and the Qt libraries the GUI does not link.
  grep -Ev 'Qt5|/libQCustomPlot\.so|/libQt6(Network|Sql|Xml|Concurrent|Eglfs|XcbQpa|OpenGL)[^/]*\.so' "$list" > "$list.2"
  mv "$list.2" "$list"
  # The shared libraries of every ELF file so far, without glibc's own (the machine's are used).
  for f in $(sort -u "$list"); do
    if [ -f "$f" ] && file -L "$f" | grep -q ELF; then ldd "$f" 2>/dev/null | awk '/=> \//{print $3}'; fi
  done | grep -Ev '/(libc|libm|libpthread|libdl|librt|libgcc_s|libresolv|libutil)\.so|ld-linux' >> "$list"
  # Symlinks with their targets; /lib -> /usr/lib (merged /usr); regular files and links only.
  sort -u "$list" | while read -r f; do
    echo "$f"; if [ -L "$f" ]; then readlink -f "$f"; fi
  done | sed 's#^/lib/#/usr/lib/#' | sort -u | while read -r f; do if [ -e "$f" ]; then echo "${f#/}"; fi; done > "$G/files.txt"
  tar -C / -cf - -T "$G/files.txt" | xz -T0 -6 > "$G/sysroot.tar.xz" || exit 1
  echo "packed $(wc -l < "$G/files.txt") files: $(du -h "$G/sysroot.tar.xz" | cut -f1)"
  exit 0
fi
model=${1:-fashion-mnist-quality}
OUT=${OUT:-gpu-logs}
mkdir -p gpu-logs
R=$PWD/$G/root
t0=$SECONDS
[ -d "$R/usr" ] || { mkdir -p "$R" && xz -dc "$G/sysroot.tar.xz" | tar -C "$R" -xf -; }
# Qt's CMake files check that every tool and plugin they list exists; the build runs only moc,
# rcc and uic and links no plugin, so what was not packed becomes an empty placeholder.
grep -ho '${_IMPORT_PREFIX}/[^ ";)>]*' "$R"/usr/lib/x86_64-linux-gnu/cmake/Qt6*/*Targets*.cmake | sort -u |
  sed "s#\${_IMPORT_PREFIX}#$R/usr#" | while read -r f; do
    case "$f" in */include/*) continue ;; esac
    [ -e "$f" ] || { mkdir -p "$(dirname "$f")" && : > "$f" && chmod +x "$f"; }
  done
echo "glibc here: $(ldd --version | head -1); unpacked in $((SECONDS - t0)) s"
L=$R/usr/lib/x86_64-linux-gnu
# Debian 12's libstdc++ only where the machine's is older than the one Qt was built with.
mkdir -p "$R/compat" && mv "$L"/libstdc++.so* "$R/compat/" 2>/dev/null
sys_cxx=$(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')
if [ -n "$sys_cxx" ] && grep -qa GLIBCXX_3.4.30 "$sys_cxx"; then extra_lib=; else extra_lib=$R/compat:; echo "using Debian's libstdc++"; fi
export LD_LIBRARY_PATH=$extra_lib$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$R"/usr/lib/qt6/libexec/moc --version || { echo "moc does not start here"; ldd "$R"/usr/lib/qt6/libexec/moc | grep "not found"; exit 1; }
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build-gpu-gui -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLAB_BUILD_GUI=ON -DDLAB_WITH_OPENCV=OFF \
  -DDLAB_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$torch_prefix;$R/usr" -DCMAKE_LIBRARY_PATH="$L" \
  -DCMAKE_INCLUDE_PATH="$R/usr/include" -DQT_HOST_PATH="$R/usr" > gpu-logs/gui-configure.log 2>&1 ||
  { tail -40 gpu-logs/gui-configure.log; exit 1; }
grep -E "Qt6_DIR|fused|CUDA graphs" gpu-logs/gui-configure.log; grep Qt6_DIR build-gpu-gui/CMakeCache.txt
cmake --build build-gpu-gui --target diffusionlab -j "$(nproc)" > gpu-logs/gui-build.log 2>&1 ||
  { grep -E "error" -A3 gpu-logs/gui-build.log | head -40; exit 1; }
echo "build $((SECONDS - t0)) s"
app=build-gpu-gui/app/diffusionlab
export QT_QPA_PLATFORM=offscreen QT_PLUGIN_PATH=$L/qt6/plugins XDG_CONFIG_HOME=/tmp/dlab-gui-config
mkdir -p /tmp/dlab-fonts && cat > /tmp/dlab-fonts/fonts.conf <<XML
<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><dir>$R/usr/share/fonts</dir><cachedir>/tmp/dlab-fonts/cache</cachedir></fontconfig>
XML
export FONTCONFIG_FILE=/tmp/dlab-fonts/fonts.conf
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
for dev in ${DEVICES:-cuda cpu cuda}; do
  echo "== --bench-stall, $model, --device $dev"
  timeout 240 $app --device $dev --model "$model" --bench-stall 2>&1 | grep -v "^QStandardPaths" | tee -a "$OUT/gui-bench-stall.log"
done
echo "== --bench-stall, fashion-mnist-live, --device cuda"
timeout 120 $app --device cuda --model fashion-mnist-live --bench-stall 2>&1 | grep -v "^QStandardPaths" | tee -a "$OUT/gui-bench-stall.log"
[ "${SHOT:-1}" = 1 ] && timeout 120 $app --device cuda --tab 0 --model "$model" --play --size 1280x800 --screenshot "$OUT/screenshot-gui-cuda.png" 2>&1 | tail -2
echo "total $((SECONDS - t0)) s"
