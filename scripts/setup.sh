#!/usr/bin/env bash
# Installs what is missing (Debian packages), configures and builds Release in
# build/, and writes the default training corpus. Safe to run again: each step
# is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config libopenblas-openmp-dev libomp-dev
          nlohmann-json3-dev catch2 pybind11-dev libopenmpi-dev openmpi-bin
          python3 python3-dev python3-numpy python3-torch)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

if [ ! -f data/synthetic/train.idx ] || [ ! -f data/synthetic/valid.idx ]; then
  build/qj-make-corpus --output data/synthetic
fi
