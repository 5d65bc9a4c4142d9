#!/usr/bin/env bash
# One entry point for the README's set-up on a fresh Debian 12 machine:
#   installer/diffusionlab.sh gui [ARGS...]   install what is missing, build, launch the application
#   installer/diffusionlab.sh test            install what is missing, build, run the tests
#                                             (all but the heavy statistical runs, label slow)
#   installer/diffusionlab.sh test-slow       the same for the heavy statistical runs only
#   installer/diffusionlab.sh build           install what is missing and build
#   installer/diffusionlab.sh hardening [SECONDS]
#                                             the test suite built with AddressSanitizer and
#                                             UndefinedBehaviorSanitizer (label slow excluded), then
#                                             every libFuzzer target for SECONDS each (default 30)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

mode=${1:-}
[ $# -gt 0 ] && shift

build() {
  bash "$here/setup-debian.sh"
  local t0=$SECONDS
  cmake --preset default >/dev/null
  cmake --build --preset default -j "$(nproc)"
  echo "[build] done in $((SECONDS - t0)) s" >&2
}

case "$mode" in
  build)
    build
    ;;
  gui)
    build
    if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
      echo "[gui] no display found: starting under xvfb-run (set DISPLAY to see the window)" >&2
      exec xvfb-run -a "$root/build/app/diffusionlab" "$@"
    fi
    exec "$root/build/app/diffusionlab" "$@"
    ;;
  test)
    build
    # House rule: the engine builds with LibTorch alone.
    if grep -rlE '#\s*include\s*[<"](Q[A-Za-z]+|qcustomplot\.h|opencv2/)' core; then
      echo "[test] ERROR: core/ includes Qt or OpenCV headers (listed above)" >&2
      exit 1
    fi
    t0=$SECONDS
    ctest --preset default
    echo "[test] tests done in $((SECONDS - t0)) s" >&2
    ;;
  test-slow)
    build
    t0=$SECONDS
    ctest --preset slow
    echo "[test] slow tests done in $((SECONDS - t0)) s" >&2
    ;;
  hardening)
    bash "$here/setup-debian.sh" --hardening
    t0=$SECONDS
    cmake --preset sanitize >/dev/null
    cmake --build --preset sanitize -j "$(nproc)"
    echo "[hardening] sanitizer build done in $((SECONDS - t0)) s" >&2
    t0=$SECONDS
    ctest --preset sanitize
    echo "[hardening] sanitizer tests done in $((SECONDS - t0)) s" >&2
    t0=$SECONDS
    bash "$root/fuzz/run.sh" "${1:-30}"
    echo "[hardening] fuzzing done in $((SECONDS - t0)) s" >&2
    ;;
  *)
    echo "usage: $0 gui|test|test-slow|build|hardening [ARGS...]" >&2
    exit 2
    ;;
esac
