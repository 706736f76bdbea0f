#!/usr/bin/python3
"""Overhead of driving training from Python: examples/train.py against build/qj-train.

Both programs train the same config (default configs/synthetic.json, 30 steps, no
evaluation) in the same process layout and thread count; each prints the
trainer's summary line, whose tokens/s leaves out the warm-up step. The two
programs alternate for --rounds rounds (qj-train first in odd rounds, train.py
first in even ones) so that a machine's drifting load falls on both; the ratio
reported is the median over rounds of train.py's tokens/s / qj-train's (target:
>= 0.99).

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


def run(command, env):
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("failed: {}\n{}{}".format(" ".join(command), result.stdout, result.stderr))
    found = SUMMARY.search(result.stdout)
    if not found:
        sys.exit("no summary line from {}:\n{}".format(command[0], result.stdout))
    return float(found.group(2))


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
    rounds = []
    for r in range(args.rounds):
        order = ["qj-train", "train.py"] if r % 2 == 0 else ["train.py", "qj-train"]
        rates = {name: run(commands[name], env) for name in order}
        rates["ratio"] = rates["train.py"] / rates["qj-train"]
        rounds.append(rates)
        print("round {}: qj-train {:.0f} tok/s, train.py {:.0f} tok/s, ratio {:.3f}".format(
            r + 1, rates["qj-train"], rates["train.py"], rates["ratio"]), flush=True)
    ratio = statistics.median(r["ratio"] for r in rounds)
    result = {"benchmark": "python_overhead", "config": args.config, "steps": args.steps,
              "threads": args.threads, "overrides": args.set, "machine": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "load_average": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "rounds": rounds, "median_ratio": ratio}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("train.py / qj-train tokens/s: {:.3f} (median of {} rounds; target >= 0.99) -> {}".format(
        ratio, args.rounds, os.path.relpath(args.out, ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
