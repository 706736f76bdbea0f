#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer: configures
# build-asan/ (cmake -DQJ_SANITIZE=ON, CPU only), builds it and runs ctest there.
#   scripts/sanitize.sh              the default set (ctest -LE long)
#   scripts/sanitize.sh --fast       the C++ tests only: unit tests, the MPI tests (the
#                                    watchdog thread in every multi-rank run) and the fp32
#                                    equivalence matrix; what CI runs (.ci/run)
#   scripts/sanitize.sh -R model     extra arguments go to ctest
# Every sanitizer report (also one from a program that a Python test expected to
# fail, or one under mpirun) is written to build-asan/sanitizer-logs/; the
# script prints them and fails when there is any, even if ctest passed.
# Run one program by hand with the same settings: source the environment part
# (ASAN_OPTIONS, UBSAN_OPTIONS, LSAN_OPTIONS below) and drop log_path to see the
# report on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fast=0
if [[ "${1:-}" == --fast ]]; then
  fast=1
  shift
fi

jobs=$(nproc)
# QJ_SANITIZE compiles with -O1 -g1, whatever the build type.
# Ranks under mpirun record whole allocation stacks: tests/sanitizers/mpirun
# says why. It becomes ctest's MPIEXEC here and the mpirun on PATH (Python
# tests, scripts/launch.sh) below.
export QJ_REAL_MPIRUN=$(command -v mpirun || true)
mpi_flags=()
[[ -n "$QJ_REAL_MPIRUN" ]] && mpi_flags=(-DMPIEXEC_EXECUTABLE="$root/tests/sanitizers/mpirun")
cmake -S . -B build-asan -G Ninja -DQJ_SANITIZE=ON "${mpi_flags[@]}" >/dev/null
if (( fast )); then
  # The C++ test executables and qj-equivalence: no other programs, so no
  # Python test (the library is most of the full build's compile time).
  targets="$(cd tests/unit && ls test_*.cpp | sed 's/\.cpp$//') qj-equivalence"
  [[ -n "$QJ_REAL_MPIRUN" ]] && targets+=" $(cd tests/mpi && ls test_*.cpp | sed 's/^/mpi_/; s/\.cpp$//')"
  cmake --build build-asan -j"$jobs" --target $targets
else
  cmake --build build-asan -j"$jobs"
fi

# Reports go to files (one per process, named by pid) rather than stderr, so
# that a test which checks a child's stderr or exit code cannot hide one.
logs=$root/build-asan/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
common="log_path=$logs/report:abort_on_error=1:print_summary=1"
# Leak checking on; the suppressions name only other projects' libraries.
# allocator_may_return_null: the cpu backend's alloc returns null on failure (a tested contract).
export ASAN_OPTIONS="$common:allocator_may_return_null=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="$common:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0"
[[ -z "$QJ_REAL_MPIRUN" ]] || export PATH=$root/tests/sanitizers:$PATH
# ctest passes its environment to every test; Python tests pass theirs to the
# programs they start, and mpirun passes its own to the ranks on this machine.
# The Python interpreter itself is not instrumented (no LD_PRELOAD), so torch
# runs as usual.

status=0
if (( fast )); then
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE long -R '^(test_|mpi_test_|equivalence_matrix$)' "$@" || status=$?
else
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE long "$@" || status=$?
fi

# A finding is an ERROR (AddressSanitizer, LeakSanitizer) or a runtime error
# (UndefinedBehaviorSanitizer); other files hold warnings, such as the one for
# the allocation that the OOM test expects to fail.
mapfile -t findings < <(grep -l -E 'ERROR: |runtime error:' "$logs"/report.* 2>/dev/null || true)
if (( ${#findings[@]} > 0 )); then
  echo "sanitize: ${#findings[@]} sanitizer report(s) in $logs:" >&2
  for report in "${findings[@]}"; do
    echo "==== $report" >&2
    cat "$report" >&2
  done
  (( status != 0 )) || status=1
fi
exit $status
