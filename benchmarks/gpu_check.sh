#!/usr/bin/env bash
# Builds the CUDA backend on a GPU machine and runs its conformance test
# (every op of the cuda backend against the cpu backend, fp32 and bf16), the
# whole-model check (10 steps on cuda reproduce the cpu losses, fp32 and bf16),
# the equivalence matrix on cuda (fp32 and bf16), then the benchmarks:
# attention against torch SDPA, memory-bound ops against cudaMemcpy, GPT-2 124M
# training in bf16 against PyTorch (fp32, bf16, bf16 + torch.compile). One summary
# table is printed last; results land in benchmarks/results/ (and $OUT if set).
#
#   benchmarks/gpu_check.sh [BUILD_DIR]        (from the repository root; default build-gpu)
#
# The GPU machine has no network. Its image has a compiler, CMake and the CUDA
# toolkit, but maybe not the Debian packages the build needs (nlohmann-json,
# OpenBLAS with OpenMP, and OpenBLAS's libgfortran). Carry the .deb files over,
# unpack them into a prefix and point QJ_DEPS_PREFIX at it:
#   apt-get download nlohmann-json3-dev libopenblas0-openmp libopenblas-openmp-dev \
#                    libgfortran5 libquadmath0          # on a machine with network
#   for f in *.deb; do dpkg -x "$f" /opt/qj-deps; done  # on the GPU machine
#   QJ_DEPS_PREFIX=/opt/qj-deps benchmarks/gpu_check.sh
# QJ_JOBS sets the build's parallelism (default: all cores).
# QJ_CHECK_BUDGET_S (default 450) bounds the whole script: the benchmarks share
# what the build and the checks leave. QJ_SKIP_BENCH=1 skips the benchmarks.
# The benchmarks need a python3 with torch >= 2.0 on PATH (torch 2.11 on the
# GPU machine); without it only our own kernels are timed.
# The script checks for everything first and lists what is missing (exit 3).
# Exit status: that of qj-backend-test (0 all passed, 1 a failure, 77 no GPU),
# 3 when something the build needs is missing, 4 when the build fails; 1 also
# when the whole-model check fails. The benchmarks never change it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 4
BUILD_DIR=${1:-build-gpu}
PREFIX=${QJ_DEPS_PREFIX:-}
ARCH=x86_64-linux-gnu
missing=()

# The first of the given paths that exists, else nothing.
first_existing() {
  for p in "$@"; do [ -e "$p" ] && { echo "$p"; return 0; }; done
  return 1
}

need_tool() {  # name, what provides it
  command -v "$1" >/dev/null 2>&1 || missing+=("program $1 ($2)")
}

need_file() {  # description, candidate paths...
  local what=$1; shift
  first_existing "$@" >/dev/null || missing+=("$what: none of $*")
}

# ---- what the build needs ----
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
need_tool cmake "CMake >= 3.25"
need_tool g++ "build-essential"
need_tool nvcc "the CUDA toolkit"
need_tool python3 "Python 3 (CMake's find_package(Python3))"
need_file "nlohmann-json headers (nlohmann-json3-dev)" \
  /usr/include/nlohmann/json.hpp "$PREFIX/usr/include/nlohmann/json.hpp"
need_file "nlohmann-json CMake config (nlohmann-json3-dev)" \
  /usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake \
  /usr/lib/cmake/nlohmann_json/nlohmann_jsonConfig.cmake \
  "$PREFIX/usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake"
need_file "OpenBLAS OpenMP header cblas.h (libopenblas-openmp-dev)" \
  /usr/include/$ARCH/openblas-openmp/cblas.h "$PREFIX/usr/include/$ARCH/openblas-openmp/cblas.h"
OPENBLAS=$(first_existing /usr/lib/$ARCH/openblas-openmp/libopenblas.so.0 \
  "$PREFIX/usr/lib/$ARCH/openblas-openmp/libopenblas.so.0") ||
  missing+=("OpenBLAS OpenMP library libopenblas.so.0 (libopenblas0-openmp)")
GOMP=$(g++ -print-file-name=libgomp.so 2>/dev/null)
[ -n "$GOMP" ] && [ "$GOMP" != "libgomp.so" ] || missing+=("libgomp.so (gcc's OpenMP runtime, libgcc-*-dev)")

# Libraries unpacked into the prefix are found at run time through these.
if [ -n "$PREFIX" ]; then
  export LD_LIBRARY_PATH="$PREFIX/usr/lib/$ARCH:$PREFIX/usr/lib/$ARCH/openblas-openmp:$PREFIX/lib/$ARCH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [ -n "${OPENBLAS:-}" ]; then
  unresolved=$(ldd "$OPENBLAS" 2>/dev/null | awk '/not found/ {print $1}')
  for lib in $unresolved; do
    missing+=("$lib, needed by $OPENBLAS (libgfortran5 / libquadmath0)")
  done
fi

echo "gpu_check: repository $(pwd), build directory $BUILD_DIR, QJ_DEPS_PREFIX=${PREFIX:-<unset>}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "gpu_check: MISSING what the build needs:"
  for m in "${missing[@]}"; do echo "  - $m"; done
  echo "Carry the Debian packages named above, unpack each with 'dpkg -x FILE.deb PREFIX'"
  echo "and run again with QJ_DEPS_PREFIX=PREFIX."
  exit 3
fi

# ---- the machine ----
nvidia-smi || echo "gpu_check: nvidia-smi failed (continuing: the test reports the device itself)"
nvcc --version | tail -n 2

# ---- configure and build ----
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DQJ_BUILD_TESTS=OFF ${PREFIX:+-DQJ_DEPS_PREFIX="$PREFIX"} ||
  { echo "gpu_check: cmake configure FAILED"; exit 4; }
jobs=${QJ_JOBS:-$(nproc 2>/dev/null || echo 4)}
cmake --build "$BUILD_DIR" -j "$jobs" --target qj-backend-test ||
  { echo "gpu_check: building qj-backend-test FAILED"; exit 4; }
cmake --build "$BUILD_DIR" -j "$jobs" --target qj-train qj-make-corpus qj-equivalence ||
  echo "gpu_check: building qj-train FAILED (the conformance test runs anyway)"

# ---- 1. every op of the cuda backend against the cpu backend ----
report="$BUILD_DIR/backend_test.txt"
"$BUILD_DIR/qj-backend-test" --backend cuda >"$report" 2>&1
status=$?
[ -n "${OUT:-}" ] && [ -d "${OUT}" ] && cp "$report" "$OUT/" 2>/dev/null
echo "gpu_check: qj-backend-test --backend cuda exited with $status; its output:"
cat "$report"
# The fallback fp32 attention kernels on every shape (otherwise they run only
# for head dimensions the tiled kernels do not specialise).
simple_report="$BUILD_DIR/backend_test_simple_attention.txt"
"$BUILD_DIR/qj-backend-test" --backend cuda --simple-attention --filter attention >"$simple_report" 2>&1
simple_status=$?
echo "gpu_check: qj-backend-test --simple-attention --filter attention exited with $simple_status:"
tail -n 5 "$simple_report"
[ $simple_status = 0 ] || status=$simple_status

# ---- 2. the whole model: 10 fp32 steps on cuda reproduce the cpu run's losses ----
# Same seed, same data, no shuffle. The bound 1e-4 (relative, per step) allows
# fp32 summation-order differences growing over 10 AdamW steps.
model_status=1
rm -f "$BUILD_DIR/model_check.txt"
corpus="$BUILD_DIR/corpus"
if [ -x "$BUILD_DIR/qj-train" ] && "$BUILD_DIR/qj-make-corpus" --output "$corpus" >/dev/null; then
  for precision in fp32 bf16; do
    for dev in cpu cuda; do
      for preset in gpt2 llama; do
        run=$dev-$preset-$precision
        "$BUILD_DIR/qj-train" --config configs/synthetic.json --set model.preset="$preset" \
          --set train.steps=10 --set train.warmup_steps=2 --set train.eval_every=0 \
          --set data.shuffle=false --set data.train="$corpus/train" --set data.valid="$corpus/valid" \
          --set backend.device=$dev --set train.precision=\"$precision\" \
          --metrics-jsonl "$BUILD_DIR/$run.jsonl" >"$BUILD_DIR/$run.log" 2>&1 ||
          { echo "gpu_check: qj-train on $dev ($preset, $precision) FAILED:"; tail -5 "$BUILD_DIR/$run.log"; }
      done
    done
  done
  python3 - "$BUILD_DIR" <<'PY' | tee "$BUILD_DIR/model_check.txt" && model_status=0
import json, os, sys
build = sys.argv[1]
# fp32: the same arithmetic up to summation order. bf16: the CPU reference rounds
# where the CUDA kernels round, but a different summation order can flip a
# rounding by one bf16 step (2^-8); the bound is set well under the gap between
# bf16 and fp32 themselves (printed beside it) and far under what a wrong kernel gives.
BOUND = {"fp32": 1e-4, "bf16": 5e-3}
ok = True
def steps(name):
    path = f"{build}/{name}.jsonl"
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if '"loss"' in l]
def worst(a, b):
    return max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
for precision in ("fp32", "bf16"):
    for preset in ("gpt2", "llama"):
        cpu, cuda = steps(f"cpu-{preset}-{precision}"), steps(f"cuda-{preset}-{precision}")
        if len(cpu) != 10 or len(cuda) != 10:
            print(f"model {preset} {precision}: a run did not finish 10 steps -> FAIL")
            ok = False
            continue
        w = worst(cpu, cuda)
        ok = ok and w < BOUND[precision]
        gap = ""
        if precision == "bf16" and len(steps(f"cpu-{preset}-fp32")) == 10:
            gap = f" (bf16 vs fp32 on cpu: {worst(steps(f'cpu-{preset}-fp32'), cpu):.2e})"
        print(f"model {preset}: 10 {precision} steps, max relative loss difference cuda vs cpu "
              f"{w:.2e} (bound {BOUND[precision]:.0e}){gap}; last step "
              f"{cuda[-1]['tokens_per_s']:.0f} tok/s on cuda, {cpu[-1]['tokens_per_s']:.0f} on cpu")
sys.exit(0 if ok else 1)
PY
fi

# ---- 2b. parallel layouts on the GPU: 8 ranks share it, device tensors travel ----
# through host buffers over MPI (staged_comm.h); every layout against one process
# on the same GPU, as the CPU equivalence matrix does.
equivalence_status=1
equivalence_report="$BUILD_DIR/equivalence_cuda.txt"
if [ -x "$BUILD_DIR/qj-equivalence" ] && command -v mpirun >/dev/null 2>&1; then
  OMPI_MCA_mpi_yield_when_idle=1 timeout 300 mpirun --allow-run-as-root --oversubscribe -np 8 \
    "$BUILD_DIR/qj-equivalence" --data "$BUILD_DIR/equivalence" --device cuda \
    >"$equivalence_report" 2>&1 && equivalence_status=0
  # bf16 (tolerances as in tests/CMakeLists.txt, justified in tests/mpi/equivalence_matrix.cpp)
  OMPI_MCA_mpi_yield_when_idle=1 timeout 300 mpirun --allow-run-as-root --oversubscribe -np 8 \
    "$BUILD_DIR/qj-equivalence" --data "$BUILD_DIR/equivalence_bf16" --device cuda \
    --precision bf16 --tolerance 5e-4 --param-tolerance 5e-2 \
    >>"$equivalence_report" 2>&1 || equivalence_status=1
  cat "$equivalence_report"
  [ -n "${OUT:-}" ] && [ -d "${OUT}" ] && cp "$equivalence_report" "$OUT/" 2>/dev/null
else
  echo "gpu_check: qj-equivalence or mpirun missing: parallel layouts on cuda not checked" | tee "$equivalence_report"
fi

# ---- 3. benchmarks (they never change the exit status) ----
# What the budget leaves after the checks is shared: 25% attention, 10%
# memory-bound ops, the rest GPT-2. Each script keeps to its share itself and
# also runs under a hard `timeout` a little longer than it.
results=benchmarks/results
attn_json=$results/attention_vs_sdpa.json
membw_jsonl=$results/gpu_membw.jsonl
gpt2_json=$results/gpu_gpt2_vs_torch.json
rm -f "$attn_json" "$membw_jsonl" "$gpt2_json"  # no stale numbers in the summary
mkdir -p "$results"
budget=${QJ_CHECK_BUDGET_S:-450}
reserve=20  # seconds kept for the summary and the hard timeouts' slack
left=$((budget - SECONDS - reserve))
if [ "${QJ_SKIP_BENCH:-0}" = 1 ]; then
  echo "gpu_check: benchmarks skipped (QJ_SKIP_BENCH=1)"
elif [ $status = 77 ]; then
  echo "gpu_check: benchmarks skipped (no GPU)"
elif [ $left -lt 60 ]; then
  echo "gpu_check: benchmarks skipped (${SECONDS}s spent, only ${left}s of the ${budget}s budget left)"
elif ! cmake --build "$BUILD_DIR" -j "$jobs" --target qj-attention-bench qj-membw-bench; then
  echo "gpu_check: building qj-attention-bench / qj-membw-bench FAILED: benchmarks skipped"
else
  echo "gpu_check: benchmarks, ${left}s for all of them"
  attn_s=$((left * 25 / 100))
  timeout $((attn_s + 30)) python3 benchmarks/attention_vs_sdpa.py \
    --bench "$BUILD_DIR/qj-attention-bench" --budget-s 1 --time-budget-s $attn_s --output "$attn_json" ||
    echo "gpu_check: attention_vs_sdpa.py exited with $? (124 = the hard timeout)"
  membw_s=$((left * 10 / 100))
  timeout $((membw_s + 15)) "$BUILD_DIR/qj-membw-bench" --budget-s 1 >"$membw_jsonl" ||
    echo "gpu_check: qj-membw-bench exited with $? (124 = the hard timeout)"
  cat "$membw_jsonl"
  [ -n "${OUT:-}" ] && [ -d "${OUT}" ] && cp "$membw_jsonl" "$OUT/" 2>/dev/null
  gpt2_s=$((budget - SECONDS - reserve))
  if [ $gpt2_s -ge 60 ]; then
    timeout $((gpt2_s + 15)) python3 benchmarks/gpu_gpt2_vs_torch.py --build "$BUILD_DIR" \
      --steps 12 --warmup 3 --micro-batch 8 --global-batch 32 --corpus-tokens 1000000 --precision bf16 \
      --time-budget-s $gpt2_s --output "$gpt2_json" ||
      echo "gpu_check: gpu_gpt2_vs_torch.py exited with $? (124 = the hard timeout)"
  else
    echo "gpu_check: GPT-2 benchmark skipped (only ${gpt2_s}s left)"
  fi
fi

# ---- summary, last ----
verdict() { [ "$1" = 0 ] && echo PASS || echo FAIL; }
python3 benchmarks/gpu_summary.py --conformance "$(tail -n 1 "$report")" --conformance-status $status \
  --model-status $model_status --model-report "$BUILD_DIR/model_check.txt" --gpt2 "$gpt2_json" \
  --attention "$attn_json" --membw "$membw_jsonl" --elapsed-s $SECONDS || {
  echo
  echo "gpu_check summary"
  echo "  conformance (qj-backend-test --backend cuda): $(tail -n 1 "$report")  -> $(verdict $status)"
  echo "  whole model, cuda vs cpu in fp32 and bf16, 10 steps, both presets: $(verdict $model_status)"
}
echo "  parallel layouts on cuda (qj-equivalence, 8 ranks on one GPU): $(tail -n 1 "$equivalence_report")  -> $(verdict $equivalence_status)"
[ $status = 0 ] && [ $model_status = 0 ] && [ $equivalence_status = 0 ]
