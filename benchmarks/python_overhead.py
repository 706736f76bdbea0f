#!/usr/bin/python3
"""Overhead of driving training from Python: examples/train.py against build/qj-train.

Both programs train the same config (default configs/synthetic.json, 30 steps, no
evaluation) in the same process layout and thread count; each prints the
trainer's summary line, whose tokens/s leaves out the warm-up step. The two
programs alternate for --rounds rounds (qj-train first in odd rounds, train.py
first in even ones) so that a machine's drifting load falls on both; the ratio
reported is the median over rounds of train.py's tokens/s / qj-train's (target:
>= 0.99), beside the ratios of the two programs' median and fastest steps (each
step's tokens/s from the JSONL records): on a busy machine the fastest steps
are the least disturbed, and the least noisy estimate of the overhead.

    /usr/bin/python3 benchmarks/python_overhead.py [--config FILE] [--steps 30]
        [--rounds 3] [--threads 2] [--set section.key=VALUE ...] [--out FILE]

Needs qj-train and the Python module in the build folder (env QJ_BUILD_DIR,
default build). Writes benchmarks/results/python_overhead.json.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("QJ_BUILD_DIR", os.path.join(ROOT, "build")))
SUMMARY = re.compile(r"^done: (\d+) steps .*\| ([\d.]+) tok/s \| MFU", re.M)


def run(command, env, jsonl):
    """(the summary's tokens/s, each step's tokens/s after the warm-up step)."""
    result = subprocess.run(command + ["--metrics-jsonl", jsonl], cwd=ROOT, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit("failed: {}\n{}{}".format(" ".join(command), result.stdout, result.stderr))
    found = SUMMARY.search(result.stdout)
    if not found:
        sys.exit("no summary line from {}:\n{}".format(command[0], result.stdout))
    with open(jsonl) as f:
        steps = [json.loads(line) for line in f]
    return float(found.group(2)), [r["tokens_per_s"] for r in steps if r.get("step", 0) > 1 and "loss" in r]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/synthetic.json")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "python_overhead.json"))
    args = p.parse_args()
    settings = ["--config", args.config, "--set", "train.steps={}".format(args.steps),
                "--set", "train.warmup_steps=1", "--set", "train.eval_every=0"]
    for s in args.set:
        settings += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), os.path.join(BUILD, "python")]))
    commands = {"qj-train": [os.path.join(BUILD, "qj-train")] + settings,
                "train.py": [sys.executable, os.path.join(ROOT, "examples", "train.py")] + settings}
    rounds, steps = [], {"qj-train": [], "train.py": []}
    jsonl = os.path.join(BUILD, "python_overhead_steps.jsonl")
    load_before = os.getloadavg()
    for r in range(args.rounds):
        order = ["qj-train", "train.py"] if r % 2 == 0 else ["train.py", "qj-train"]
        rates = {}
        for name in order:
            rates[name], per_step = run(commands[name], env, jsonl)
            steps[name] += per_step
        rates["ratio"] = rates["train.py"] / rates["qj-train"]
        rounds.append(rates)
        print("round {}: qj-train {:.0f} tok/s, train.py {:.0f} tok/s, ratio {:.3f}".format(
            r + 1, rates["qj-train"], rates["train.py"], rates["ratio"]), flush=True)
    os.remove(jsonl)
    ratio = statistics.median(r["ratio"] for r in rounds)
    # Per step: the median step and the fastest one of each program. On a busy
    # machine the fastest steps are the ones least disturbed by other work.
    median_step = statistics.median(steps["train.py"]) / statistics.median(steps["qj-train"])
    best_step = max(steps["train.py"]) / max(steps["qj-train"])
    result = {"benchmark": "python_overhead", "config": args.config, "steps": args.steps,
              "threads": args.threads, "overrides": args.set, "machine": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "rounds": rounds, "median_ratio": ratio,
              "median_step_ratio": median_step, "best_step_ratio": best_step,
              "best_step_tokens_per_s": {k: max(v) for k, v in steps.items()}}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("train.py / qj-train tokens/s: {:.3f} (median of {} rounds' summaries; target >= 0.99), "
          "{:.3f} (median step), {:.3f} (fastest step); load average {:.1f} -> {:.1f} -> {}".format(
              ratio, args.rounds, median_step, best_step, load_before[0], os.getloadavg()[0],
              os.path.relpath(args.out, ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
