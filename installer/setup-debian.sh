#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and running DiffusionLab need.
# Idempotent and non-interactive; works as root or through sudo; names any package that fails.
set -euo pipefail

PACKAGES=(
  # toolchain
  cmake ninja-build g++ git
  # engine: LibTorch (CPU), fast BLAS for it (switches libblas.so.3 to OpenBLAS/OpenMP)
  libtorch-dev libopenblas0-openmp
  # distributed training: the headers of gloo, the CPU collectives LibTorch's c10d uses
  libgloo-dev
  # imaging, JSON (safetensors headers, manifests), gzip (IDX datasets)
  libopencv-dev nlohmann-json3-dev zlib1g-dev
  # GUI: Qt 6 widgets, platform plugins, QCustomPlot built for Qt 6, an SVG icon loader, fonts
  qt6-base-dev qt6-qpa-plugins qt6-svg-dev libqcustomplot-dev libqcustomplot2.1-qt6 libgl-dev
  fonts-dejavu-core
  # real data
  dataset-fashion-mnist
  # headless GUI runs and screenshots
  xvfb xauth imagemagick
)
# `setup-debian.sh --hardening`: also the fuzzing toolchain (clang's libFuzzer and sanitizer runtimes).
if [ "${1:-}" = "--hardening" ]; then
  PACKAGES+=(clang-14 libclang-rt-14-dev)
fi

log() { printf '[setup] %s\n' "$*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  log "all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    log "ERROR: not root and sudo is not installed; run as root: apt-get install ${missing[*]}"
    exit 1
  fi
  SUDO=(sudo)
fi

log "installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq; then
  log "ERROR: apt-get update failed"
  exit 1
fi
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; then
  log "apt-get install failed for the whole set; trying one package at a time"
  for p in "${missing[@]}"; do
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >&2 ||
      log "ERROR: package '$p' could not be installed"
  done
fi

failed=()
for p in "${missing[@]}"; do installed "$p" || failed+=("$p"); done
if [ ${#failed[@]} -ne 0 ]; then
  log "ERROR: these packages are not installed: ${failed[*]}"
  exit 1
fi
log "done"
