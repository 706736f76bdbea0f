#!/usr/bin/python3
"""Every CPU benchmark with fixed, short settings, and one JSON of their figures
(benchmarks/run_all.sh is the entry point; this is its body).

    benchmarks/run_all.sh [--out FILE] [--compare OLD.json] [--only NAME ...]

Runs, each into a temporary JSON (the scripts' own results files are left alone):
  cpu_train   cpu_vs_torch.py --steps 8: qj-train tokens/s against PyTorch's
  tokenizer   tokenizer_throughput.py --min-mb 2 --qj-runs 2: qj MB/s on one
              thread against the reference JavaScript encoder's
  checkpoint  checkpoint_bench.py, a 27M-parameter model (317 MiB with Adam
              moments), no dp=2 case: save against a raw fsync'd write, load
              against a raw read of the same bytes
  pipeline    parallel_bench.sh, pp=2 only, 4 timed steps, no overlap case:
              the 1F1B bubble at m=4 against (p-1)/(m+p-1)
and writes benchmarks/results/run_all.json (--out): the machine, cores,
compiler, commit, and per figure its value, its peer's, and ratio, oriented so
that higher is better for qj (the bubble's ratio is theory / measured).
3-4 minutes on 2 busy cores (185-246 s measured). --compare OLD.json then prints old against new
(benchmarks/bench_compare.py) and exits 1 if a ratio fell by more than its noise
band. Needs a Release build in build/ (QJ_BUILD_DIR) with qj-train,
qj-tokenize, qj-make-corpus and qj-parallel-bench; a figure whose tools are
missing is skipped and reported as such.

Noise bands, from the spread of three back-to-back runs of the whole script on
the machine the numbers come from (2 cores of an AMD EPYC, shared with
compilers and other jobs: load average 7-12; ratios run 1 / 2 / 3, and the
largest fall between two runs, min/max - 1):
  cpu_train   2.03 / 5.75 / 1.73   (-70%)
  tokenizer   81.5 / 58.7 / 66.2   (-28%)
  checkpoint  save 0.67 / 0.85 / 0.72 (-21%), load 0.075 / 0.060 / 0.163 (-63%)
  pipeline    0.92 / 1.39 / 0.91   (-34%)
Each band sits just above that fall, so on such a machine only a large
regression fails the check. The CPU ratio moves most: with 2 OpenMP threads on
2 busy cores every parallel region spin-waits for a descheduled thread, and
PyTorch's many small regions suffer far more than qj's. On a quiet runner the
spread, and so the bands, should be much smaller: re-measure them there (run
this three times) before tightening BANDS.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_compare  # noqa: E402

PY = "/usr/bin/python3"
BANDS = {"cpu_train.qj_vs_torch": 0.75, "tokenizer.qj_1thread_vs_js": 0.30,
         "checkpoint.save_vs_raw_write": 0.25, "checkpoint.load_vs_raw_read": 0.65,
         "pipeline.bubble_1f1b_pp2_m4": 0.35}


def figure(value, peer, unit, peer_name, ratio=None):
    return {"value": value, "peer": peer, "unit": unit, "peer_name": peer_name,
            "ratio": ratio if ratio is not None else value / peer}


def cpu_train(build, out):
    cmd = [PY, "benchmarks/cpu_vs_torch.py", "--steps", "8", "--build", build, "--out", out]
    def figures(r):
        return {"cpu_train.qj_vs_torch": figure(r["qj_tokens_per_s"], r["torch_tokens_per_s"], "tokens/s",
                                                f"PyTorch {r['torch_version']}")}
    return cmd, {}, ["qj-train"], figures


def tokenizer(build, out):
    cmd = [PY, "benchmarks/tokenizer_throughput.py", "--min-mb", "2", "--qj-runs", "2", "--build", build,
           "--out", out]
    def figures(r):
        qj, ref = r["rows"]["qj, 1 thread"], r["rows"]["reference (node)"]
        return {"tokenizer.qj_1thread_vs_js": figure(qj["mb_per_s"], ref["mb_per_s"], "MB/s",
                                                     "gpt-3-encoder (node)")}
    return cmd, {}, ["qj-tokenize"], figures


def checkpoint(build, out):
    cmd = [PY, "benchmarks/checkpoint_bench.py", "--layers", "4", "--hidden", "384", "--heads", "6",
           "--every", "4", "--saves", "2", "--no-dp", "--build", build, "--out", out]
    def figures(r):
        raw = r["raw_disk"]
        return {"checkpoint.save_vs_raw_write": figure(r["save"]["single"]["MBps"], raw["write_MBps"], "MB/s",
                                                       "raw sequential write + fsync"),
                "checkpoint.load_vs_raw_read": figure(r["load"]["cold"]["MBps"], raw["read_MBps"], "MB/s",
                                                      f"raw sequential read ({raw['read_cache']})")}
    return cmd, {}, ["qj-train", "qj-make-corpus"], figures


def pipeline(build, out):
    env = {"QJ_BUILD_DIR": build, "QJ_PBENCH_RESULT": out, "QJ_PBENCH_STEPS": "4", "QJ_PBENCH_PP4": "0",
           "QJ_PBENCH_OVERLAP_STEPS": "0"}
    def figures(r):
        case = next(c for c in r["cases"] if c["bench"] == "pipeline_bubble" and c["schedule"] == "1f1b"
                    and c["p"] == 2 and c["m"] == 4)
        measured, theory = case["span_idle_fraction_mean"], case["theory"]
        return {"pipeline.bubble_1f1b_pp2_m4": figure(measured, theory, "idle fraction", "(p-1)/(m+p-1)",
                                                      ratio=theory / measured)}
    return ["bash", "benchmarks/parallel_bench.sh"], env, ["qj-parallel-bench"], figures


BENCHMARKS = {"cpu_train": cpu_train, "tokenizer": tokenizer, "checkpoint": checkpoint, "pipeline": pipeline}


def first_line(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def cmake_cache(build, key):
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def machine(build):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) / 2**20 for l in open("/proc/meminfo") if l.startswith("MemTotal")), None)
    compiler = cmake_cache(build, "CMAKE_CXX_COMPILER")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1) if mem else None,
            "kernel": platform.release(),
            "compiler": first_line([compiler, "--version"]) if compiler else None,
            "build_type": cmake_cache(build, "CMAKE_BUILD_TYPE"),
            "commit": first_line(["git", "-C", ROOT, "rev-parse", "HEAD"]), "dirty": bool(dirty),
            "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                                 "OMP_WAIT_POLICY") if k in os.environ}}


def run_one(name, build, tmp):
    out = os.path.join(tmp, name + ".json")
    cmd, env, tools, figures = BENCHMARKS[name](build, out)
    missing = [t for t in tools if not os.access(os.path.join(build, t), os.X_OK)]
    if missing:
        return {"status": "skipped: " + ", ".join(missing) + " not built"}, {}
    log = os.path.join(tmp, name + ".log")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **env), stdout=f, stderr=subprocess.STDOUT).returncode
    run = {"command": " ".join(cmd), "env": env, "seconds": round(time.perf_counter() - start, 1),
           "loadavg_1m_before": load, "loadavg_1m_after": os.getloadavg()[0]}
    if rc != 0 or not os.path.exists(out):
        with open(log) as f:
            tail = f.read()[-2000:]
        return {**run, "status": f"failed (exit {rc})", "log_tail": tail}, {}
    with open(out) as f:
        found = figures(json.load(f))
    for key, fig in found.items():
        fig["noise_band"] = BANDS[key]
    return {**run, "status": "ok"}, found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "run_all.json"))
    ap.add_argument("--compare", metavar="OLD.json", help="compare with an earlier run_all.json; exit 1 on a regression")
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run these benchmarks only")
    ap.add_argument("--build", default=os.environ.get("QJ_BUILD_DIR", os.path.join(ROOT, "build")))
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    old = None
    if a.compare:  # read before --out may overwrite it
        try:
            old = bench_compare.load(a.compare)
        except (OSError, ValueError) as e:
            sys.exit(f"run_all: --compare: {e}")
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(build), "runs": {}, "figures": {}}
    doc["commit"] = doc["machine"]["commit"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qj_run_all_") as tmp:
        for name in a.only or BENCHMARKS:
            print(f"== {name}", flush=True)
            doc["runs"][name], found = run_one(name, build, tmp)
            doc["figures"].update(found)
            print(f"   {doc['runs'][name]['status']}, {doc['runs'][name].get('seconds', 0):.0f} s", flush=True)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"\n{'figure':<34}{'qj':>12}{'peer':>12}{'ratio':>9}  unit (peer)")
    for key, fig in doc["figures"].items():
        print(f"{key:<34}{fig['value']:>12.4g}{fig['peer']:>12.4g}{fig['ratio']:>9.3f}  "
              f"{fig['unit']} ({fig['peer_name']})")
    print(f"wrote {os.path.relpath(a.out, ROOT)} in {doc['seconds']:.0f} s")
    failed = [n for n, r in doc["runs"].items() if r["status"].startswith("failed")]
    if old:
        rows, regressed = bench_compare.compare(old, doc)
        print("\n" + bench_compare.table(rows, old, doc))
        if regressed:
            print("run_all: at least one ratio fell by more than its noise band")
            return 1
    if failed:
        print("run_all: failed: " + ", ".join(failed), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
