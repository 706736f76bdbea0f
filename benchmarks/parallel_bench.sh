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
# busy/idle seconds) and prints the short tables last. About 2-4 minutes on a
# quiet 2-core machine. QJ_PBENCH_STEPS sets the timed steps per case (default 4).
#
# What the numbers mean on a small CPU machine (read before quoting them):
# - Every rank runs 1 thread. 2 ranks on 2 cores is a fair measurement as long
#   as nothing else runs: each stage has its own core and idle time is time
#   spent waiting for the neighbour stage. Any other load on the machine
#   (compilers, other jobs) takes cores away at random moments; a stage that is
#   descheduled stretches its busy time and its neighbour's idle time alike, so
#   a loaded machine pushes the measured bubble up. The JSON records the 1-minute
#   load average before every case.
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
# - Messages between stages go through shared memory and are small against a
#   stage's compute (128 KiB per micro-batch), so the measured bubble sits a
#   little above the theory; uneven stages (embedding on the first, head and
#   loss on the last) add to it.
# - overlap on/off: on a CPU the reductions are driven by the same thread that
#   computes (MPI makes progress inside its calls), so overlap hides less than
#   on a GPU with a separate copy engine; the ratio is what this machine gives.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 3
BUILD_DIR=${QJ_BUILD_DIR:-build}
BIN=$BUILD_DIR/qj-parallel-bench
STEPS=${QJ_PBENCH_STEPS:-4}
RESULT=benchmarks/results/parallel_bench.json
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
  timeout "$limit" "${MPIRUN[@]}" -np "$ranks" "$BIN" "$@" --steps "$STEPS" \
    --json "$WORK/cases.jsonl" --data "$WORK/data" >"$WORK/$name.log" 2>&1
  local rc=$?
  sed -n '/^pipeline bubble\|^data-parallel/q;p' "$WORK/$name.log"
  echo "   ($((SECONDS - start)) s, exit $rc)"
  [ $rc -eq 0 ] || echo "$name: exit $rc (124: over ${limit}s)" >>"$WORK/failures"
  return 0
}

run bubble_pp2 2 150 --bubble
run overlap_dp2 2 60 --overlap
if [ "${QJ_PBENCH_PP4:-1}" != 0 ]; then
  run bubble_pp4 4 150 --bubble
fi

python3 - "$WORK/cases.jsonl" "$RESULT" "$STEPS" <<'EOF'
import json, os, sys, time
cases = [json.loads(l) for l in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
       "timed_steps": int(sys.argv[3]), "cases": cases}
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
