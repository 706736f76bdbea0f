#!/usr/bin/env python3
# Per-rank memory of GPT-3 175B over a few parallel layouts (nothing is allocated).
#   /usr/bin/python3 examples/plan.py [--config configs/gpt3-175b.json]
"""A table of qj-plan's per-rank memory for several layouts of one model."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import qianjun as qj  # noqa: E402

# (name, overrides, ranks): each a layout Megatron users would try for 175B.
LAYOUTS = [
    ("tp8 pp16 interleaved, ZeRO-1, selective", {}, 1024),
    ("tp8 pp16 interleaved, no ZeRO", {"optim.zero": 0}, 1024),
    ("tp8 pp16 1f1b, ZeRO-1, full recompute",
     {"parallel.schedule": "1f1b", "parallel.virtual_stages": 1, "model.recompute": "full"}, 1024),
    ("tp8 pp8 1f1b, ZeRO-1, no recompute",
     {"parallel.pp": 8, "parallel.schedule": "1f1b", "parallel.virtual_stages": 1,
      "model.recompute": "none"}, 512),
    ("tp4 pp32 1f1b, ZeRO-1, selective, no sequence parallel",
     {"parallel.tp": 4, "parallel.pp": 32, "parallel.schedule": "1f1b", "parallel.virtual_stages": 1,
      "parallel.sequence_parallel": False}, 1024),
]
ARENAS = ["parameters", "gradients", "optimizer", "activations", "workspace", "staging"]


def gib(n):
    return "{:.1f}".format(n / 2**30)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "gpt3-175b.json"))
    args = p.parse_args()
    rows = []
    for name, overrides, world in LAYOUTS:
        cfg = qj.Config.load(args.config)
        cfg.update(overrides)
        plan = qj.plan(cfg, world=world)
        stage = plan["stages"][plan["largest_stage"]]
        rows.append((name, plan, stage["arenas"], stage["total_bytes"]))
    print("{}: {:.1f}B parameters; per-rank memory (GiB) of the largest pipeline stage".format(
        os.path.relpath(args.config), rows[0][1]["parameters"] / 1e9))
    shown = [a for a in ARENAS if any(row[2].get(a, 0) for row in rows)]
    header = "{:56} {:>5} {:>3} {:>3} {:>3} " + " ".join(["{:>11}"] * (len(shown) + 1))
    print(header.format("layout", "ranks", "tp", "pp", "dp", *shown, "total"))
    for name, plan, arenas, total in rows:
        print("{:56} {:>5} {:>3} {:>3} {:>3} ".format(name, plan["world"], plan["tp"], plan["pp"], plan["dp"])
              + " ".join("{:>11}".format(gib(arenas.get(a, 0))) for a in shown)
              + " {:>11}".format(gib(total)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
