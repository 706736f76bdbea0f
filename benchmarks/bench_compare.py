#!/usr/bin/python3
"""Compare two run_all.json files (benchmarks/run_all.sh): one row per figure,
old and new ratio against its peer, the change, and whether it regressed.

    /usr/bin/python3 benchmarks/bench_compare.py OLD.json NEW.json

Every figure's ratio is oriented so that higher is better for qj. A figure
regresses when its new ratio is below old * (1 - band), band being the figure's
own "noise_band" (from the new file, else the old) or DEFAULT_BAND. Exit 0: no
regression; 1: at least one; 2: unreadable input. Figures present in only one
file are listed, not judged.
"""
import json
import sys

DEFAULT_BAND = 0.15


def load(path):
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc.get("figures"), dict):
        raise ValueError(f"{path}: no 'figures' object (not a run_all.json?)")
    return doc


def compare(old, new):
    """Rows (name, old_ratio, new_ratio, change, band, verdict) and whether any regressed."""
    rows, regressed = [], False
    for name in sorted(set(old["figures"]) | set(new["figures"])):
        o, n = old["figures"].get(name), new["figures"].get(name)
        if o is None or n is None:
            rows.append((name, o and o.get("ratio"), n and n.get("ratio"), None, None,
                         "new" if o is None else "gone"))
            continue
        band = n.get("noise_band", o.get("noise_band", DEFAULT_BAND))
        r_old, r_new = o.get("ratio"), n.get("ratio")
        if not r_old or r_new is None:
            rows.append((name, r_old, r_new, None, band, "no ratio"))
            continue
        change = r_new / r_old - 1
        verdict = "REGRESSED" if r_new < r_old * (1 - band) else ("better" if change > band else "ok")
        regressed |= verdict == "REGRESSED"
        rows.append((name, r_old, r_new, change, band, verdict))
    return rows, regressed


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def table(rows, old, new):
    lines = [f"old: {old.get('commit', '?')[:12]} {old.get('date', '')}   "
             f"new: {new.get('commit', '?')[:12]} {new.get('date', '')}",
             f"{'figure':<34}{'old ratio':>10}{'new ratio':>10}{'change':>9}{'band':>7}  verdict"]
    for name, r_old, r_new, change, band, verdict in rows:
        lines.append(f"{name:<34}{fmt(r_old, '.3f'):>10}{fmt(r_new, '.3f'):>10}"
                     f"{fmt(change and change * 100, '+.1f') + ('%' if change is not None else ''):>9}"
                     f"{fmt(band and band * 100, '.0f') + ('%' if band is not None else ''):>7}  {verdict}")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        old, new = load(argv[0]), load(argv[1])
    except (OSError, ValueError) as e:
        print(f"bench_compare: {e}", file=sys.stderr)
        return 2
    rows, regressed = compare(old, new)
    print(table(rows, old, new))
    if regressed:
        print("bench_compare: at least one ratio fell by more than its noise band")
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
