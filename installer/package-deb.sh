#!/usr/bin/env bash
# Builds the Debian package (CPack) of the GUI, the CLI, the bundled models and the desktop files
# from the Release build in build/ (configured and built by installer/diffusionlab.sh; built here
# when missing) and lists what it holds. With --install it apt-get installs the .deb on this
# machine (which resolves its Depends) and runs the installed programs: the CLI's version, a sample
# from the bundled default model, and the GUI started offscreen. CI runs it with --install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${DLAB_BUILD_DIR:-build}
[ -f "$build/CMakeCache.txt" ] || cmake --preset default >/dev/null
cmake --build "$build" --target diffusionlab diffusionlab-cli
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls -t "$build"/diffusionlab_*.deb | head -1)
echo "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --field "$deb" Package Version Depends
dpkg-deb --contents "$deb" | awk '{print $6}' | grep -E 'bin/|applications|metainfo|icons/.*(svg|png)|models/.*safetensors' || true
if [ "${1:-}" = "--install" ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
  $sudo_cmd apt-get install -y "./$deb"
  /usr/bin/diffusionlab-cli --version
  tmp=$(mktemp -d)
  /usr/bin/diffusionlab-cli sample --model default --steps 10 --count 4 --device cpu -o "$tmp/installed.png" --quiet
  test -s "$tmp/installed.png" && echo "installed CLI sampled the bundled model: $tmp/installed.png"
  QT_QPA_PLATFORM=offscreen /usr/bin/diffusionlab --screenshot "$tmp/installed-gui.png" >/dev/null 2>&1
  test -s "$tmp/installed-gui.png" && echo "installed GUI started offscreen: $tmp/installed-gui.png"
fi
