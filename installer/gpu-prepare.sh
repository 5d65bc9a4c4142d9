#!/usr/bin/env bash
# Run here (Debian 12): downloads the .debs that installer/gpu-check.sh unpacks on the GPU machine
# into .gpu/debs (ignored by git, carried by the device tool).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .gpu/debs
cd .gpu/debs
apt-get download qt6-base-dev qt6-base-dev-tools libqt6core6 libqt6test6 libicu72 \
  libdouble-conversion3 libb2-1 libpcre2-16-0 libglib2.0-0 nlohmann-json3-dev qmake6
