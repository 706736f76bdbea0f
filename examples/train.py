#!/usr/bin/env python3
# Trains from a config, printing qj-train's log; --plot writes the loss curve.
#   /usr/bin/python3 examples/train.py --config configs/synthetic.json --set train.steps=40 --plot loss.png
#   mpirun -np 4 /usr/bin/python3 examples/train.py --config configs/default.json --set parallel.tp=2
# (as root or on few cores: scripts/launch.sh 4 /usr/bin/python3 examples/train.py ...)
"""Training driven from Python: the same run, log and numbers as build/qj-train."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import qianjun as qj  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="the training config (JSON)")
    p.add_argument("--set", action="append", default=[], metavar="section.key=VALUE",
                   help="overrides one config value, as qj-train --set (repeatable)")
    p.add_argument("--metrics-jsonl", help="one JSON line per step, as qj-train writes it")
    p.add_argument("--init-from", help="starts from these weights (Hugging Face safetensors)")
    p.add_argument("--export", help="writes the weights at the end (Hugging Face safetensors)")
    p.add_argument("--plot", help="writes the training and validation loss curves to this PNG")
    return p.parse_args()


def plot(path, steps, losses, valid):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, label="training loss")
    if valid:
        ax.plot([s for s, _ in valid], [v for _, v in valid], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print("loss curve written to " + path, flush=True)


def main():
    args = parse_args()
    try:
        cfg = qj.Config.load(args.config, args.set)
        if args.export:
            cfg["train.export_path"] = args.export
        trainer = qj.Trainer(cfg, init_from=args.init_from, metrics_jsonl=args.metrics_jsonl)
    except qj.Error as e:  # reported by rank 0 only, as qj-train does; every rank exits 2
        if qj.world_rank() == 0:
            print("error: " + str(e), file=sys.stderr)
        return 2
    steps, losses, valid = [], [], []
    for m in trainer.train():  # rank 0 prints qj-train's log line for every step
        steps.append(m["step"])
        losses.append(m["loss"])
        if "valid_loss" in m:
            valid.append((m["step"], m["valid_loss"]))
    if args.plot and trainer.rank == 0:
        plot(args.plot, steps, losses, valid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
