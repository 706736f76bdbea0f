#!/usr/bin/env python3
"""The one summary table benchmarks/gpu_check.sh prints last: conformance,
the whole-model check, GPT-2 124M throughput against PyTorch, attention
against SDPA, memory-bound ops against cudaMemcpy. Reads the files the
benchmarks wrote; a missing or unreadable one shows as "not run" with the
reason. Standard library only. Exit status 1 when it could not format
everything (gpu_check.sh then prints the verdict lines itself), else 0.

    python3 benchmarks/gpu_summary.py --conformance "LINE" --conformance-status 0
        --model-status 0 [--model-report FILE] [--gpt2 JSON] [--attention JSON]
        [--membw JSONL] [--elapsed-s N]
"""
import argparse
import json


def load_json(path):
    if not path:
        return None, "not run"
    try:
        with open(path) as f:
            return json.load(f), None
    except OSError:
        return None, f"not run (no {path})"
    except ValueError as e:
        return None, f"unreadable {path}: {e}"


def load_jsonl(path):
    if not path:
        return None, "not run"
    try:
        with open(path) as f:
            rows = [json.loads(l) for l in f if l.startswith("{")]
    except OSError:
        return None, f"not run (no {path})"
    except ValueError as e:
        return None, f"unreadable {path}: {e}"
    return (rows, None) if rows else (None, f"no results in {path}")


def num(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def gpt2_section(path):
    data, why = load_json(path)
    if data is None:
        return [f"  GPT-2 training throughput: {why}"]
    m = data["model"]
    lines = [f"  GPT-2 {m['layers']}L/{m['hidden']}/{m['heads']}h seq {m['seq_len']} vocab "
             f"{m['padded_vocab']}, global batch {data['global_batch']} x micro {data['micro_batch']}, "
             f"{data['steps']} steps (first {data['warmup_steps_untimed']} untimed), "
             f"{data.get('device_name') or ''} torch {data.get('torch_version') or '-'}",
             f"  MFU: {data['flops_per_token'] / 1e9:.3f} GFLOP/token against {data['peak_note']}",
             f"    {'run':<34}{'tokens/s':>10}{'MFU':>8}{'qj/run':>8}  status"]
    names = {"qj": "qj-train " + data.get("device", "") + " " + str(data["runs"].get("qj", {}).get("precision", "")),
             "fp32": "torch fp32 eager (TF32 off)", "bf16": "torch bf16 autocast eager",
             "bf16-compile": "torch bf16 autocast + compile"}
    for name, r in data["runs"].items():
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        ratio = num(r.get("ratio_qj_over_this"), 2) if name != "qj" else ""
        lines.append(f"    {names.get(name, name):<34}{num(r.get('tokens_per_s'), 0):>10}{mfu:>8}"
                     f"{ratio:>8}  {r.get('status', '?')}")
        tail = [l for l in r.get("error_tail", "").splitlines() if l.strip()]
        if tail:
            lines.append(f"      {tail[-1].strip()[:160]}")
    return lines


def attention_section(path):
    data, why = load_json(path)
    if data is None:
        return [f"  attention vs SDPA: {why}"]
    lines = ["  causal attention fwd+bwd TFLOP/s (fwd 2BHT^2D + bwd 2.5x; B*T = "
             f"{data['tokens']}, H*D = {data['width']}; torch {data.get('torch_version') or '-'})",
             f"    {'seq':>5}{'hd':>5}{'B':>4}{'H':>4}{'qj fp32':>10}{'flash bf16':>12}{'math fp32':>11}"
             f"{'qj/flash':>10}{'qj/math':>9}"]
    errors = []
    for row in data["rows"]:
        cells = []
        for impl in ("qj", "flash", "math"):
            r = row[impl]
            cells.append(num(r.get("fwd_bwd_tflops"), 2) if "fwd_bwd_tflops" in r else "err")
            if "error" in r:
                errors.append(f"    seq {row['seq']} hd {row['head_dim']} {impl}: {r['error'][:200]}")
        lines.append(f"    {row['seq']:>5}{row['head_dim']:>5}{row['batch']:>4}{row['heads']:>4}"
                     f"{cells[0]:>10}{cells[1]:>12}{cells[2]:>11}"
                     f"{num(row.get('qj_over_flash'), 3):>10}{num(row.get('qj_over_math'), 3):>9}")
    if data.get("torch_error"):
        errors.insert(0, f"    torch: {data['torch_error']}")
    return lines + errors[:8]


def membw_section(path):
    rows, why = load_jsonl(path)
    if rows is None:
        return [f"  memory-bound ops: {why}"]
    ref = rows[0]
    lines = [f"  memory-bound ops: effective GB/s (each tensor read/written once) and fraction of "
             f"{ref['op']} ({ref['gbps']:.0f} GB/s, read+write)",
             f"    {'op':<24}{'shape':<26}{'GB/s':>8}{'fraction':>10}"]
    for r in rows[1:]:
        lines.append(f"    {r['op']:<24}{r['shape']:<26}{r['gbps']:>8.0f}{r['fraction_of_memcpy']:>10.2f}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conformance", default="")
    ap.add_argument("--conformance-status", type=int, default=1)
    ap.add_argument("--model-status", type=int, default=1)
    ap.add_argument("--model-report")
    ap.add_argument("--gpt2")
    ap.add_argument("--attention")
    ap.add_argument("--membw")
    ap.add_argument("--elapsed-s", type=float)
    a = ap.parse_args()
    verdict = {True: "PASS", False: "FAIL"}
    print()
    print("gpu_check summary" + (f" ({a.elapsed_s:.0f} s)" if a.elapsed_s is not None else ""))
    print(f"  conformance (qj-backend-test --backend cuda): {a.conformance}  -> "
          f"{verdict[a.conformance_status == 0]}")
    print(f"  whole model, cuda vs cpu in fp32 and bf16, 10 steps, both presets: {verdict[a.model_status == 0]}")
    if a.model_report:
        try:
            with open(a.model_report) as f:
                for line in f:
                    if line.startswith("model "):
                        print("    " + line.rstrip())
        except OSError:
            pass
    for section in (gpt2_section(a.gpt2), attention_section(a.attention), membw_section(a.membw)):
        for line in section:
            print(line)
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, and let gpu_check.sh print the verdicts itself
        print(f"gpu_summary: could not format the summary: {type(e).__name__}: {e}")
        raise SystemExit(1)
