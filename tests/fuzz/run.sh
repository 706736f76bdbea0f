#!/usr/bin/env bash
# Fuzzes the parsers: builds the libFuzzer targets with clang, ASan and UBSan
# (QJ_FUZZ=ON) in a build folder of their own, then runs each for a bounded
# time on a copy of its corpus (tests/fuzz/corpus/<name>/). Exits non-zero on
# any finding (crash, sanitizer report, uncaught exception, timeout, memory
# over the limits) and prints where the input that caused it is.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60, all)
#
# Environment: QJ_FUZZ_BUILD_DIR (default build-fuzz), QJ_FUZZ_JOBS (ninja -j,
# default 2), QJ_FUZZ_OUT (the corpora copies and findings, default
# $QJ_FUZZ_BUILD_DIR/runs). A fixed reproducer belongs in corpus/<name>/, where
# the normal build's ctest (fuzz_replay_<name>) replays it from then on.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config safetensors manifest indexed_dataset jsonl gpt2_encode gpt2_vocab)
fi
build=${QJ_FUZZ_BUILD_DIR:-$root/build-fuzz}
out=${QJ_FUZZ_OUT:-$build/runs}

if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DQJ_FUZZ=ON -DQJ_CUDA=OFF -DQJ_NATIVE=OFF \
    -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" >/dev/null
fi
ninja -C "$build" -j "${QJ_FUZZ_JOBS:-2}" "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for name in "${targets[@]}"; do
  corpus=$out/$name/corpus
  findings=$out/$name/findings
  rm -rf "$corpus" "$findings"
  mkdir -p "$corpus" "$findings"
  cp "$here/corpus/$name/"* "$corpus/"
  echo "== fuzz_$name: $seconds s"
  if "$build/tests/fuzz/fuzz_$name" "$corpus" -max_total_time="$seconds" -timeout=10 \
       -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=8192 -print_final_stats=1 \
       -artifact_prefix="$findings/" >"$out/$name/log" 2>&1; then
    tail -n 12 "$out/$name/log" | grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)' || true
  else
    failed+=("$name")
    grep -E 'ERROR: |runtime error|SUMMARY|fuzz property|Test unit written' "$out/$name/log" | head -n 20
    echo "   log: $out/$name/log"
    for finding in "$findings"/*; do echo "   input: $finding"; done
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz findings in: ${failed[*]} (reproduce: $build/tests/fuzz/fuzz_NAME INPUT)"
  exit 1
fi
echo "no findings (${targets[*]}; $seconds s each)"
