#!/usr/bin/env python3
"""Causal attention, forward and backward: our cuda kernel (qj-attention-bench,
fp32) against torch's F.scaled_dot_product_attention on the same shapes:
flash backend in bf16 (the peer) and the math backend in fp32 with TF32 off
(the same arithmetic as ours, for reference).

Shapes: seq 1024/2048/4096 x head dim 64/128, batch = --tokens / seq (16k
tokens), heads = --width / head dim (1536 wide). FLOPs as in
benchmarks/attention_bench.cpp: forward 2 B H T^2 D (causal half), backward
2.5 x forward, the same count for every implementation (the math backend
computes the masked half too, but is credited with the causal half only).

    python3 benchmarks/attention_vs_sdpa.py [--bench build-gpu/qj-attention-bench]
        [--seqs 1024,2048,4096] [--head-dims 64,128] [--budget-s 2] [--time-budget-s 300]

Prints a table (TFLOP/s of forward, backward and both; ratio qj / flash and
qj / math on forward+backward) and writes benchmarks/results/attention_vs_sdpa.json
(copied to $OUT when set). A failing measurement (out of memory, a backend
not available) is reported in its cell and the others go on. Exit status 0
unless the arguments are bad (2) or the qj-attention-bench program is missing
(1); without a usable torch only ours are timed (and an ERROR line says why).
Without a GPU (smoke test, tiny shapes, torch on cpu, our cpu backend):
    /usr/bin/python3 benchmarks/attention_vs_sdpa.py --device cpu --backend cpu \\
        --bench build/qj-attention-bench --seqs 128 --head-dims 32 --tokens 256 --width 128
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from torch_fp32 import disable_tf32  # benchmarks/torch_fp32.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message, code=1):
    print(f"attention_vs_sdpa: ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def forward_flops(b, h, t, d):
    return 2.0 * b * h * t * t * d


def tflops(b, h, t, d, fwd_s, bwd_s):
    f = forward_flops(b, h, t, d)
    return {"fwd_ms": fwd_s * 1e3, "bwd_ms": bwd_s * 1e3, "fwd_tflops": f / fwd_s / 1e12,
            "bwd_tflops": 2.5 * f / bwd_s / 1e12, "fwd_bwd_tflops": 3.5 * f / (fwd_s + bwd_s) / 1e12}


# ------------------------------------------------------------ ours

def qj_measure(args, b, t, h, d, timeout_s):
    cmd = [args.bench, "--batch", str(b), "--seq", str(t), "--heads", str(h), "--head-dim", str(d),
           "--backend", args.backend, "--budget-s", str(args.budget_s)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout_s, 5))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    except OSError as e:
        return {"error": f"cannot run {args.bench}: {e}"}
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}"}
    return json.loads(lines[-1])


# ------------------------------------------------------------ torch

class TorchAttention:
    """torch's attention; when torch cannot run here, `error` says why and every
    measurement reports it (ours are still taken)."""

    def __init__(self, device):
        self.device, self.torch, self.error = device, None, None
        try:
            import torch
            import torch.nn.functional as F
        except ImportError as e:
            self.error = f"cannot import torch: {e}"
            return
        self.torch, self.F = torch, F
        self.sdpa = getattr(F, "scaled_dot_product_attention", None)
        if device == "cuda" and not torch.cuda.is_available():
            self.error = "torch.cuda.is_available() is False: no GPU for torch"
        elif device == "cuda" and self.sdpa is None:
            self.error = f"torch {torch.__version__} has no F.scaled_dot_product_attention (need >= 2.0)"
        else:  # the fp32 reference runs exact fp32 GEMMs, as our kernel's arithmetic
            self.matmul_precision = disable_tf32(torch)

    def describe(self):
        if self.torch is None:
            return {"torch_version": None, "device_name": None}
        gpu = self.device == "cuda" and self.error is None
        return {"torch_version": self.torch.__version__,
                "fp32_matmul": getattr(self, "matmul_precision", None),
                "device_name": self.torch.cuda.get_device_name(0) if gpu else self.device}

    def backend_context(self, name):
        """Restricts SDPA to one backend: 'flash' or 'math'."""
        import contextlib
        if self.sdpa is None or self.device != "cuda":
            return contextlib.nullcontext()
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
            return sdpa_kernel(SDPBackend.FLASH_ATTENTION if name == "flash" else SDPBackend.MATH)
        except ImportError:  # torch < 2.3
            return self.torch.backends.cuda.sdp_kernel(
                enable_flash=name == "flash", enable_math=name == "math", enable_mem_efficient=False)

    def attention(self, q, k, v):
        if self.sdpa is not None:
            return self.sdpa(q, k, v, is_causal=True)
        # Old torch without SDPA (only for trying this script on a cpu).
        t = q.size(-2)
        mask = self.torch.ones(t, t, dtype=self.torch.bool, device=q.device).triu(1)
        scores = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
        return self.F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v

    def time_call(self, fn, budget_s, max_samples=20):
        """Median seconds of fn() after two warm-up calls (CUDA events on a GPU)."""
        torch = self.torch
        for _ in range(2):
            fn()
        samples, start = [], time.perf_counter()
        while len(samples) < max_samples and (len(samples) < 3 or time.perf_counter() - start < budget_s):
            if self.device == "cuda":
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                begin.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(begin.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    def measure(self, kind, b, t, h, d, budget_s):
        """kind 'flash' (bf16) or 'math' (fp32, TF32 off). q, k, v are views of
        one [B, T, 3, H, D] tensor, as a model's fused projection gives them."""
        torch = self.torch
        dtype = torch.bfloat16 if kind == "flash" else torch.float32
        gen = torch.Generator(device=self.device).manual_seed(0)
        qkv = torch.randn(b, t, 3, h, d, device=self.device, dtype=dtype, generator=gen, requires_grad=True)
        q, k, v = (z.transpose(1, 2) for z in qkv.unbind(2))
        dout = torch.randn(b, h, t, d, device=self.device, dtype=dtype, generator=gen)
        with self.backend_context(kind):
            fwd_s = self.time_call(lambda: self.attention(q, k, v), budget_s)
            out = self.attention(q, k, v)
            bwd_s = self.time_call(
                lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), budget_s)
        return tflops(b, h, t, d, fwd_s, bwd_s)


def torch_measure(attn, kind, b, t, h, d, budget_s):
    if attn.error:
        return {"error": attn.error}
    try:
        return attn.measure(kind, b, t, h, d, budget_s)
    except Exception as e:  # out of memory, no kernel for this shape: report and go on
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    finally:  # the shape's tensors are gone: give their memory back for the next one
        if attn.device == "cuda":
            attn.torch.cuda.empty_cache()


# ------------------------------------------------------------ report

def cell(r, key):
    if key not in r:
        return "err"
    x = r[key]
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.4f}"


def print_table(rows):
    print()
    print("causal attention, TFLOP/s fwd / bwd / fwd+bwd (counted FLOPs: fwd 2BHT^2D, bwd 2.5x)")
    print(f"{'seq':>5} {'hd':>4} {'B':>3} {'H':>3} | {'qj fp32':^20} | {'sdpa flash bf16':^20} | "
          f"{'sdpa math fp32':^20} | {'qj/flash':>8} {'qj/math':>8}")
    for row in rows:
        parts = []
        for impl in ("qj", "flash", "math"):
            r = row[impl]
            parts.append(f"{cell(r, 'fwd_tflops'):>6} {cell(r, 'bwd_tflops'):>6} {cell(r, 'fwd_bwd_tflops'):>6}")
        ratios = [f"{row[k]:.3f}" if row.get(k) is not None else "-" for k in ("qj_over_flash", "qj_over_math")]
        print(f"{row['seq']:>5} {row['head_dim']:>4} {row['batch']:>3} {row['heads']:>3} | "
              f"{parts[0]:^20} | {parts[1]:^20} | {parts[2]:^20} | {ratios[0]:>8} {ratios[1]:>8}")
    for row in rows:
        for impl in ("qj", "flash", "math"):
            if "error" in row[impl]:
                print(f"  seq {row['seq']} hd {row['head_dim']} {impl}: {row[impl]['error']}")


def ratio(a, b):
    if "fwd_bwd_tflops" in a and "fwd_bwd_tflops" in b and b["fwd_bwd_tflops"] > 0:
        return a["fwd_bwd_tflops"] / b["fwd_bwd_tflops"]
    return None


def write_result(args, result):
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(args.output + ".tmp", args.output)
    out = os.environ.get("OUT")
    if out and os.path.isdir(out):
        shutil.copy(args.output, out)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=os.path.join(ROOT, "build-gpu", "qj-attention-bench"))
    ap.add_argument("--backend", default="cuda", help="our backend to time (cpu for a smoke test)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="torch's device")
    ap.add_argument("--seqs", default="1024,2048,4096")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--tokens", type=int, default=16384, help="batch x seq of every shape")
    ap.add_argument("--width", type=int, default=1536, help="heads x head dim of every shape")
    ap.add_argument("--budget-s", type=float, default=2.0, help="sampling time per measurement")
    ap.add_argument("--time-budget-s", type=float, default=600, help="for the whole script")
    ap.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "attention_vs_sdpa.json"))
    a = ap.parse_args()
    try:
        a.seqs = [int(x) for x in a.seqs.split(",")]
        a.head_dims = [int(x) for x in a.head_dims.split(",")]
    except ValueError:
        fail("--seqs and --head-dims take comma-separated integers", 2)
    for t in a.seqs:
        if t <= 0 or a.tokens % t:
            fail(f"--tokens {a.tokens} is not a multiple of seq {t}", 2)
    for d in a.head_dims:
        if d <= 0 or a.width % d:
            fail(f"--width {a.width} is not a multiple of head dim {d}", 2)
    return a


def main():
    args = parse_args()
    if not os.access(args.bench, os.X_OK):
        fail(f"{args.bench} not found or not executable: build target qj-attention-bench")
    attn = TorchAttention(args.device)
    if attn.error:
        print(f"attention_vs_sdpa: ERROR: {attn.error}; timing ours only", file=sys.stderr, flush=True)
    deadline = time.perf_counter() + args.time_budget_s
    shapes = [(t, d) for t in args.seqs for d in args.head_dims]
    rows = []
    for i, (t, d) in enumerate(shapes):
        b, h = args.tokens // t, args.width // d
        left = deadline - time.perf_counter()
        row = {"seq": t, "head_dim": d, "batch": b, "heads": h}
        if left <= 0:
            row.update(qj={"error": "skipped: time budget spent"}, flash={"error": "skipped"},
                       math={"error": "skipped"})
        else:
            print(f"attention_vs_sdpa: B={b} T={t} H={h} D={d}", flush=True)
            # Ours gets most of this shape's share; torch's flash and math take seconds.
            row["qj"] = qj_measure(args, b, t, h, d, 0.7 * left / (len(shapes) - i))
            row["flash"] = torch_measure(attn, "flash", b, t, h, d, args.budget_s)
            row["math"] = torch_measure(attn, "math", b, t, h, d, args.budget_s)
        row["qj_over_flash"] = ratio(row["qj"], row["flash"])
        row["qj_over_math"] = ratio(row["qj"], row["math"])
        rows.append(row)
        # After every shape, so that a hard stop from outside leaves what was measured.
        write_result(args, {"tokens": args.tokens, "width": args.width, "backend": args.backend,
                            **attn.describe(), "torch_error": attn.error,
                            "flops": "fwd 2*B*H*T^2*D (causal), bwd 2.5x fwd", "rows": rows})
    print_table(rows)
    print(f"attention_vs_sdpa: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
