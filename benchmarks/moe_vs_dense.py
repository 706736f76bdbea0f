#!/usr/bin/python3
"""Step time of a mixture-of-experts model against the dense model with the same
active parameters, in one run on the CPU.

The MoE model has --experts experts of width F, each token using --top-k of
them; the dense model is the same transformer with one MLP of width top_k x F,
so both do the same expert arithmetic per token (the MoE model adds its router
and its gather, combine and host routing; the rest is identical). Both train the
same config for --steps steps; the two alternate for --rounds rounds so that a
machine's drifting load falls on both. Reported: each model's median step time
after the warm-up step (from the JSONL records) and the ratio MoE / dense, with
the parameter counts. No expert parallelism here: every rank holds every
expert, so there is no all-to-all to measure.

    /usr/bin/python3 benchmarks/moe_vs_dense.py [--config configs/synthetic.json]
        [--experts 8] [--top-k 2] [--expert-hidden 512] [--steps 20] [--rounds 3]
        [--threads 2] [--set section.key=VALUE ...] [--out FILE]

Needs qj-train in the build folder (env QJ_BUILD_DIR, default build). Writes
benchmarks/results/moe_vs_dense.json.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("QJ_BUILD_DIR", os.path.join(ROOT, "build")))


def step_ms(overrides, args, env):
    """Median step time (ms) after the warm-up step, and the parameter counts line."""
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = os.path.join(tmp, "steps.jsonl")
        command = [os.path.join(BUILD, "qj-train"), "--config", args.config,
                   "--set", f"train.steps={args.steps}", "--set", "train.eval_every=0",
                   "--set", "train.warmup_steps=1", "--metrics-jsonl", jsonl]
        for o in overrides + args.set:
            command += ["--set", o]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit("failed: {}\n{}{}".format(" ".join(command), result.stdout, result.stderr))
        with open(jsonl) as f:
            steps = [json.loads(line) for line in f]
    ms = [r["ms"] for r in steps if r.get("step", 0) > 1 and "loss" in r]
    last = [r for r in steps if "loss" in r][-1]
    return statistics.median(ms), last


def plan_line(overrides, args, env):
    command = [os.path.join(BUILD, "qj-plan"), "--config", args.config]
    for o in overrides + args.set:
        command += ["--set", o]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return result.stdout.splitlines()[0] if result.returncode == 0 else result.stderr.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/synthetic.json")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--expert-hidden", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "moe_vs_dense.json"))
    args = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    moe = [f"model.moe_experts={args.experts}", f"model.moe_top_k={args.top_k}",
           f"model.moe_ffn_hidden={args.expert_hidden}"]
    dense = [f"model.ffn_hidden={args.top_k * args.expert_hidden}"]
    times = {"dense": [], "moe": []}
    last = {}
    for r in range(args.rounds):
        order = [("dense", dense), ("moe", moe)] if r % 2 == 0 else [("moe", moe), ("dense", dense)]
        for name, overrides in order:
            ms, last[name] = step_ms(overrides, args, env)
            times[name].append(ms)
            print(f"round {r + 1}: {name:5s} {ms:8.1f} ms/step", flush=True)
    dense_ms, moe_ms = statistics.median(times["dense"]), statistics.median(times["moe"])
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads, "config": args.config, "steps": args.steps,
        "experts": args.experts, "top_k": args.top_k, "expert_hidden": args.expert_hidden,
        "dense_plan": plan_line(dense, args, env), "moe_plan": plan_line(moe, args, env),
        "dense_ms_per_step": dense_ms, "moe_ms_per_step": moe_ms,
        "moe_over_dense": moe_ms / dense_ms,
        "dense_ms_rounds": times["dense"], "moe_ms_rounds": times["moe"],
        "last_loss": {k: v["loss"] for k, v in last.items()},
        "last_aux_loss": last["moe"].get("aux_loss"),
    }
    print(f"dense {dense_ms:.1f} ms/step, MoE {moe_ms:.1f} ms/step: "
          f"MoE / dense = {moe_ms / dense_ms:.3f}")
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
