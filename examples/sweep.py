#!/usr/bin/env python3
# A learning-rate sweep driven from Python: one short run per rate, one table.
#   /usr/bin/python3 examples/sweep.py --config configs/synthetic.json --steps 40 --lr 1e-3 2e-3 4e-3
"""Trains the same config at several learning rates and tabulates the results."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import qianjun as qj  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "synthetic.json"))
    p.add_argument("--set", action="append", default=[], metavar="section.key=VALUE",
                   help="overrides one config value for every run (repeatable)")
    p.add_argument("--steps", type=int, default=40, help="steps per run (default 40)")
    p.add_argument("--lr", type=float, nargs="+", default=[5e-4, 1e-3, 2e-3, 4e-3],
                   help="the peak learning rates to try")
    args = p.parse_args()
    results = []
    for lr in args.lr:
        cfg = qj.Config.load(args.config, args.set)
        cfg.update({"train.steps": args.steps, "train.lr": lr, "train.min_lr": lr / 10,
                    "train.warmup_steps": max(1, args.steps // 10),
                    "train.eval_every": args.steps,   # one validation, at the end
                    "train.log_every": args.steps})   # the first and last log lines only
        trainer = qj.Trainer(cfg)
        history = list(trainer.train())
        last = history[-1]
        rate = sum(m["tokens_per_s"] for m in history[1:]) / max(1, len(history) - 1)
        results.append((lr, last["loss"], last.get("valid_loss", float("nan")), rate))
        trainer.close()
    if qj.world_rank() == 0:
        best = min(results, key=lambda r: r[2])
        print("\n{:>10} {:>12} {:>12} {:>10}".format("lr", "train loss", "valid loss", "tok/s"))
        for lr, loss, valid, rate in results:
            mark = "  <- best" if (lr, loss, valid, rate) == best else ""
            print("{:>10.1e} {:>12.4f} {:>12.4f} {:>10.0f}{}".format(lr, loss, valid, rate, mark))
    return 0


if __name__ == "__main__":
    sys.exit(main())
