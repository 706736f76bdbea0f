#!/usr/bin/env bash
# Pipeline bubble and data-parallel gradient overlap, measured by the trainer's
# own timers (qj-parallel-bench, benchmarks/parallel_bench.cpp):
#   1. pp=2 on 2 ranks: gpipe, 1f1b, interleaved (v=2) for m = 2, 4, 8
#      micro-batches; the idle fraction of every stage beside the theory,
#      (p-1)/(m+p-1) and (p-1)/(v*m+p-1);
#   2. dp=2 on 2 ranks: median step time with overlap_grad_reduce on and off;
#   3. pp=4 on 4 ranks, the same as 1 (QJ_PBENCH_PP4=0 skips it).
# Builds nothing: expects qj-parallel-bench in the build folder (QJ_BUILD_DIR,
# default build), e.g. `cmake --build build --target qj-parallel-bench`.
# Writes benchmarks/results/parallel_bench.json (every case, with the per-stage
# busy/idle seconds of every timed step) and prints the short tables last.
# About 2-3 minutes on a 2-core machine. QJ_PBENCH_STEPS sets the timed steps
# per bubble case (default 6; one warm-up step comes first),
# QJ_PBENCH_OVERLAP_STEPS those of each overlap setting (default 20; 0 skips
# the overlap case), QJ_PBENCH_RESULT the JSON written (benchmarks/run_all.sh
# sets these for its short run).
#
# What the numbers mean on a small CPU machine (read before quoting them):
# - Every rank runs 1 thread. 2 ranks on 2 cores is a fair measurement as long
#   as nothing else runs: each stage has its own core and idle time is time
#   spent waiting for the neighbour stage. Any other load on the machine
#   (compilers, other jobs) takes cores away at random moments; a stage that is
#   descheduled stretches its own busy time and its neighbour's idle time, so
#   on a loaded machine the per-stage fractions move by several hundredths either
#   way (seen: up to 0.07 with a third busy process). The JSON records the
#   1-minute load average before every case; about 2 (our own ranks) means the
#   machine was otherwise quiet.
# - pp=4 on 2 cores is oversubscribed: two ranks share each core. A rank blocked
#   in a receive yields its core (OMPI_MCA_mpi_yield_when_idle=1) but still
#   polls, and a rank that could compute may wait for a core, so "idle" there
#   includes waiting for a CPU, and busy time is inflated by time slicing. Those
#   rows show the schedule's structure, not what 4 real devices would see.
# - idle/(busy+idle) is each stage's own view of its step. Later stages leave the
#   schedule as soon as their last sends are taken, while stage 0 still drains
#   the last backwards, so their own timers miss the drain (they wait for it in
#   the collectives after the schedule). 1-busy/span, idle against the longest
#   stage's schedule time, counts it and is the column comparable with theory.
# - The theory assumes equal stages and free messages. Messages between stages
#   go through shared memory and are small against a stage's compute (128 KiB
#   per micro-batch), and the 256-token vocabulary keeps embedding and head
#   cheap, so with pp=2 (5 layers per stage) gpipe and 1f1b come within 0.01
#   of it on a quiet machine. Interleaved with 10 layers splits into chunks of
#   2,3,3,2 layers (the layout counts embedding and head as a layer each): the
#   fill and drain hops are the 2-layer end chunks, so the bubble expected is
#   2/(2+5m) = 0.167, 0.091, 0.048 for m = 2, 4, 8, below the equal-chunk
#   theory, and that is about what it measures (0.17, 0.09-0.10, 0.04-0.06
#   in two runs). pp=4 runs 14 layers as 3,4,4,3 per
#   stage: the end stages idle more by that imbalance alone. The span column
#   lines up the stages' schedule times, not their start times (each starts
#   after the same all-reduce, so the offsets are small). Expect a few
#   hundredths of scatter from step to step.
# - overlap on/off: on a CPU the reductions are driven by the same thread that
#   computes (MPI makes progress inside its calls), so overlap hides less than
#   on a GPU with a separate copy engine; the ratio is what this machine gives.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 3
BUILD_DIR=${QJ_BUILD_DIR:-build}
BIN=$BUILD_DIR/qj-parallel-bench
STEPS=${QJ_PBENCH_STEPS:-6}
OVERLAP_STEPS=${QJ_PBENCH_OVERLAP_STEPS:-20}
RESULT=${QJ_PBENCH_RESULT:-benchmarks/results/parallel_bench.json}
if [ ! -x "$BIN" ]; then
  echo "error: $BIN not found; build it: cmake --build $BUILD_DIR --target qj-parallel-bench" >&2
  exit 3
fi
command -v mpirun >/dev/null || { echo "error: mpirun not on PATH" >&2; exit 3; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMPI_MCA_mpi_yield_when_idle=1
# --bind-to none: on a shared machine let the kernel place the ranks.
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none)

# run NAME RANKS TIMEOUT_S ARGS...: one mpirun, its output in $WORK/NAME.log.
run() {
  local name=$1 ranks=$2 limit=$3
  shift 3
  local start=$SECONDS
  echo "== $name ($ranks ranks)"
  timeout "$limit" "${MPIRUN[@]}" -np "$ranks" "$BIN" "$@" \
    --json "$WORK/cases.jsonl" --data "$WORK/data" >"$WORK/$name.log" 2>&1
  local rc=$?
  sed -n '/^pipeline bubble\|^data-parallel/q;p' "$WORK/$name.log"
  echo "   ($((SECONDS - start)) s, exit $rc)"
  [ $rc -eq 0 ] || echo "$name: exit $rc (124: over ${limit}s)" >>"$WORK/failures"
  return 0
}

run bubble_pp2 2 180 --bubble --steps "$STEPS"
[ "$OVERLAP_STEPS" != 0 ] && run overlap_dp2 2 90 --overlap --steps "$OVERLAP_STEPS"
if [ "${QJ_PBENCH_PP4:-1}" != 0 ]; then
  # 14 layers: 3,4,4,3 per stage for v = 1 and 2 (no count splits 4 ways evenly
  # for both with the layout's rule of counting embedding and head as a layer).
  run bubble_pp4 4 240 --bubble --steps "$STEPS" --layers 14
fi

python3 - "$WORK/cases.jsonl" "$RESULT" <<'EOF'
import json, os, sys, time
cases = [json.loads(l) for l in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
       "note": "idle fractions are medians over timed steps; see benchmarks/parallel_bench.sh",
       "cases": cases}
with open(sys.argv[2], "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print(f"\n{len(cases)} cases written to {sys.argv[2]}")
EOF

echo
for name in bubble_pp2 overlap_dp2 bubble_pp4; do
  [ -f "$WORK/$name.log" ] && sed -n '/^pipeline bubble\|^data-parallel/,$p' "$WORK/$name.log"
  echo
done
if [ -f "$WORK/failures" ]; then
  cat "$WORK/failures"
  exit 1
fi
