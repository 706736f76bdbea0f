#!/usr/bin/env bash
# The README's test command: set up, then the whole suite (C++ and Python tests
# are all registered in ctest). Long cases carry the ctest label "long" and run
# with: ctest --test-dir build -L long
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" -LE long
