#!/usr/bin/env bash
# Every CPU benchmark with fixed short settings, one JSON of figures
# (benchmarks/results/run_all.json), 3-4 minutes on 2 cores; for benchmark CI:
#   benchmarks/run_all.sh --compare benchmarks/results/run_all.json
# exits 1 when a ratio against its peer fell by more than its noise band. The
# settings, the figures and how the noise bands were measured: benchmarks/run_all.py.
exec /usr/bin/python3 "$(dirname "$0")/run_all.py" "$@"
