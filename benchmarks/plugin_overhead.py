#!/usr/bin/env python3
"""The cost of the C plugin boundary: tokens/s of qj-train on the built-in cpu
backend and on the same backend loaded as a plugin (build/libqj_cpu_plugin.so),
interleaved in one run so both see the same machine load.

    benchmarks/plugin_overhead.py [--config configs/synthetic.json] [--steps 12] [--rounds 3]

Per run: the median of the steps' tokens/s after the first two (warm-up); per
backend: the best run. Prints both and the ratio plugin / built-in (target
>= 0.98), and writes benchmarks/results/plugin_overhead.json."""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(build, config, device, steps):
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        metrics = f.name
    command = [os.path.join(build, "qj-train"), "--config", config, "--set", "backend.device=" + device,
               "--set", "train.steps=%d" % steps, "--set", "train.warmup_steps=2",
               "--set", "train.eval_every=0",
               "--metrics-jsonl", metrics]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(command), result.stderr))
    with open(metrics) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    os.unlink(metrics)
    return statistics.median(r["tokens_per_s"] for r in rows[2:]), [r["loss"] for r in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "synthetic.json"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plugin = "plugin:" + os.path.join(args.build, "libqj_cpu_plugin.so")
    runs = {"cpu": [], "plugin": []}
    losses = {}
    for _ in range(args.rounds):
        for name, device in (("cpu", "cpu"), ("plugin", plugin)):
            tokens_per_s, loss = run(args.build, args.config, device, args.steps)
            runs[name].append(tokens_per_s)
            losses[name] = loss
    best = {name: max(values) for name, values in runs.items()}
    ratio = best["plugin"] / best["cpu"]
    print("built-in cpu : %.0f tokens/s (runs: %s)" % (best["cpu"], ", ".join("%.0f" % v for v in runs["cpu"])))
    print("cpu as plugin: %.0f tokens/s (runs: %s)" % (best["plugin"], ", ".join("%.0f" % v for v in runs["plugin"])))
    print("ratio plugin / built-in: %.3f (target >= 0.98); losses identical: %s"
          % (ratio, losses["cpu"] == losses["plugin"]))
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "plugin_overhead.json"), "w") as f:
        json.dump({"config": os.path.relpath(args.config, ROOT), "steps": args.steps,
                   "rounds": args.rounds, "tokens_per_s": runs, "best": best, "ratio": ratio,
                   "losses_identical": losses["cpu"] == losses["plugin"]}, f, indent=1)


if __name__ == "__main__":
    main()
