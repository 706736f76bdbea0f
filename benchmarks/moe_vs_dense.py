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
the parameter counts.

Expert parallelism, in the same run: the MoE model on --ep ranks (mpirun, one
thread each) as dp --ep with every rank holding every expert, and as dp --ep
with the experts split over ep --ep (all-to-all dispatch). Reported: both step
times, and the bytes the all-to-alls sent per step (the JSONL's
all_to_all_bytes) against qj-plan's estimate for balanced routing.

    /usr/bin/python3 benchmarks/moe_vs_dense.py [--config configs/synthetic.json]
        [--experts 8] [--top-k 2] [--expert-hidden 512] [--steps 20] [--rounds 3]
        [--threads 2] [--ep 2] [--set section.key=VALUE ...] [--out FILE]

Needs qj-train and qj-plan in the build folder (env QJ_BUILD_DIR, default
build), and mpirun for --ep > 1. Writes benchmarks/results/moe_vs_dense.json.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("QJ_BUILD_DIR", os.path.join(ROOT, "build")))


def run_steps(overrides, args, env, ranks=1):
    """The JSONL records of one training run (ranks > 1: under mpirun)."""
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = os.path.join(tmp, "steps.jsonl")
        command = [os.path.join(BUILD, "qj-train"), "--config", args.config,
                   "--set", f"train.steps={args.steps}", "--set", "train.eval_every=0",
                   "--set", "train.warmup_steps=1", "--metrics-jsonl", jsonl]
        for o in overrides + args.set:
            command += ["--set", o]
        if ranks > 1:
            command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                       "-np", str(ranks)] + command
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit("failed: {}\n{}{}".format(" ".join(command), result.stdout, result.stderr))
        with open(jsonl) as f:
            return [json.loads(line) for line in f if "loss" in json.loads(line)]


def step_ms(overrides, args, env, ranks=1):
    """Median step time (ms) after the warm-up step, and the last step's record."""
    steps = run_steps(overrides, args, env, ranks)
    return statistics.median(r["ms"] for r in steps if r["step"] > 1), steps[-1]


def plan_output(overrides, args, env, ranks=1):
    command = [os.path.join(BUILD, "qj-plan"), "--config", args.config, "--world", str(ranks)]
    for o in overrides + args.set:
        command += ["--set", o]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("failed: {}\n{}".format(" ".join(command), result.stderr))
    return result.stdout


def plan_line(overrides, args, env):
    return plan_output(overrides, args, env).splitlines()[0]


def expert_parallel(moe, args):
    """Step times of dp ep with and without the experts split, and the all-to-all bytes."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_MCA_mpi_yield_when_idle="1")
    dp = [f"parallel.dp={args.ep}", "backend.threads=1"]
    split = moe + dp + [f"parallel.ep={args.ep}"]
    times = {"dp": [], "dp_ep": []}
    sent = []
    for r in range(args.rounds):
        for name, overrides in [("dp", moe + dp), ("dp_ep", split)]:
            steps = run_steps(overrides, args, env, ranks=args.ep)
            times[name].append(statistics.median(s["ms"] for s in steps if s["step"] > 1))
            if name == "dp_ep":
                sent += [s["all_to_all_bytes"] for s in steps]
            print(f"round {r + 1}: MoE {name:5s} on {args.ep} ranks {times[name][-1]:8.1f} ms/step",
                  flush=True)
    plan = plan_output(split, args, env, ranks=args.ep)
    estimate = float(re.search(r"all-to-all per step, balanced routing: .*\((\d+) bytes\)", plan).group(1))
    measured = statistics.mean(sent)
    return {
        "ranks": args.ep, "ep": args.ep,
        "moe_dp_ms_per_step": statistics.median(times["dp"]),
        "moe_dp_ep_ms_per_step": statistics.median(times["dp_ep"]),
        "ep_over_dp": statistics.median(times["dp_ep"]) / statistics.median(times["dp"]),
        "all_to_all_bytes_per_step_measured_mean": measured,
        "all_to_all_bytes_per_step_measured_min_max": [min(sent), max(sent)],
        "all_to_all_bytes_per_step_plan_balanced": estimate,
        "measured_over_plan": measured / estimate,
        "plan": [line.strip() for line in plan.splitlines() if "expert" in line or "all-to-all" in line],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/synthetic.json")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--expert-hidden", type=int, default=512)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ep", type=int, default=2, help="expert-parallel ranks (0 or 1: skip)")
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
    if args.ep > 1 and shutil.which("mpirun"):
        ep = expert_parallel(moe, args)
        report["expert_parallel"] = ep
        print(f"MoE on {args.ep} ranks: dp {ep['moe_dp_ms_per_step']:.1f} ms/step, dp + ep "
              f"{ep['moe_dp_ep_ms_per_step']:.1f} ms/step (ratio {ep['ep_over_dp']:.3f}); "
              f"all-to-all {ep['all_to_all_bytes_per_step_measured_mean'] / 1e6:.3f} MB/step "
              f"measured vs {ep['all_to_all_bytes_per_step_plan_balanced'] / 1e6:.3f} MB planned "
              f"for balanced routing ({ep['measured_over_plan']:.3f})")
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
