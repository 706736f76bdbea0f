#!/usr/bin/python3
"""Training throughput on the CPU: qj-train against an equivalent PyTorch program.

Both train the same GPT-2-style model (the model section of the given config)
on the same corpus windows (no shuffle), with the same global batch, the same
micro-batches, AdamW and gradient clipping, on the same number of threads, in
one run of this script. Prints tokens/s of each and the ratio qj / torch, and
writes benchmarks/results/cpu_vs_torch.json.

    /usr/bin/python3 benchmarks/cpu_vs_torch.py [--config configs/synthetic.json]
        [--steps 20] [--threads N] [--build build]

The first two steps of each run are warm-up and not timed.
"""
import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ENV_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP_STEPS = 2


def resolved_config(config_path, overrides):
    """The sections the peer needs, with the gpt2 preset's defaults for keys the
    file leaves out, and the benchmark's --set overrides applied."""
    with open(config_path) as f:
        cfg = json.load(f)
    model = {"layers": 12, "hidden": 768, "heads": 12, "vocab": 50257, "vocab_pad_to": 128,
             "seq_len": 1024, "ffn_hidden": 0, "norm_eps": 1e-5, **cfg.get("model", {})}
    if model.get("preset", "gpt2") != "gpt2":
        sys.exit("cpu_vs_torch: the PyTorch peer implements the gpt2 preset only")
    train = {"global_batch": 32, "micro_batch": 4, "lr": 6e-4, "grad_clip": 1.0, **cfg.get("train", {})}
    optim = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, **cfg.get("optim", {})}
    data = {"train": "data/synthetic/train", **cfg.get("data", {})}
    for o in overrides:
        key, value = o.split("=", 1)
        section, name = key.split(".")
        {"model": model, "train": train, "optim": optim, "data": data}[section][name] = json.loads(value)
    return model, train, optim, data


# ------------------------------------------------------------- the PyTorch peer

class Block(nn.Module):
    def __init__(self, c, heads, ffn, eps):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(c, eps=eps)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c, eps=eps)
        self.c_fc = nn.Linear(c, ffn)
        self.mlp_proj = nn.Linear(ffn, c)

    def forward(self, x, mask):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = F.softmax(scores.masked_fill(mask[:t, :t], float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, m):
        super().__init__()
        c, vocab = m["hidden"], m["padded_vocab"]
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(m["seq_len"], c)
        self.blocks = nn.ModuleList(Block(c, m["heads"], m["ffn_hidden"] or 4 * c, m["norm_eps"])
                                    for _ in range(m["layers"]))
        self.ln_f = nn.LayerNorm(c, eps=m["norm_eps"])
        self.register_buffer("mask", torch.triu(torch.ones(m["seq_len"], m["seq_len"], dtype=torch.bool), 1))
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.blocks:
            x = block(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def torch_run(model_cfg, train, optim, data, steps, threads, profile=False):
    """tokens/s, losses, the threads forward and backward really ran on, and
    with profile the autograd profiler's self CPU time per op over the timed steps."""
    torch.manual_seed(1234)
    torch.set_num_threads(threads)
    model = GPT(model_cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": optim["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=train["lr"], betas=(optim["beta1"], optim["beta2"]), eps=optim["eps"])
    tokens = np.memmap(os.path.join(ROOT, data["train"]) + ".bin", dtype=np.uint16, mode="r")
    t, gb, mb = model_cfg["seq_len"], train["global_batch"], train["micro_batch"]
    times, losses, seen = [], [], {}
    profiler = torch.autograd.profiler.profile() if profile else None
    for step in range(steps):
        if profiler and step == WARMUP_STEPS:
            profiler.__enter__()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(gb // mb):
            first = step * gb + micro * mb
            rows = np.stack([tokens[(first + i) * t:(first + i) * t + t + 1] for i in range(mb)]).astype(np.int64)
            batch = torch.from_numpy(rows)
            loss = model(batch[:, :-1], batch[:, 1:]) / (gb // mb)
            seen["forward"] = torch.get_num_threads()
            # Backward runs on autograd's own thread: ask there.
            loss.register_hook(lambda g: seen.__setitem__("backward", torch.get_num_threads()))
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
        opt.step()
        times.append(time.perf_counter() - start)
        losses.append(total)
    ops = None
    if profiler:
        profiler.__exit__(None, None, None)
        ops = [{"op": e.key, "calls": e.count, "seconds": e.self_cpu_time_total / 1e6}
               for e in profiler.key_averages()]
    timed = times[WARMUP_STEPS:]
    return gb * t * len(timed) / sum(timed), losses, seen, ops


def qj_run(build, config, overrides, steps, threads):
    """tokens/s, losses, and the op profile (QJ_PROFILE_OPS, src/backends/op_profile.h):
    time per op over all steps, the GEMM kernel, OpenBLAS's core and the threads as qj-train saw them."""
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = os.path.join(tmp, "metrics.jsonl")
        profile = os.path.join(tmp, "ops.json")
        args = [os.path.join(build, "qj-train"), "--config", config, "--metrics-jsonl", jsonl,
                "--set", f"train.steps={steps}", "--set", "train.warmup_steps=1",
                "--set", "train.eval_every=0", "--set", "data.shuffle=false"]
        for o in overrides:
            args += ["--set", o]
        # The profile costs a clock read and a map update per op (~600 ops a step
        # of hundreds of ms), so it stays on.
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), QJ_PROFILE_OPS=profile)
        subprocess.run(args, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        with open(jsonl) as f:
            records = [json.loads(l) for l in f if '"loss"' in l]
        with open(profile) as f:
            ops = json.load(f)
    timed = records[WARMUP_STEPS:]
    tokens_per_step = timed[0]["tokens_per_s"] * timed[0]["ms"] / 1e3
    return (tokens_per_step * len(timed) / sum(r["ms"] / 1e3 for r in timed),
            [r["loss"] for r in records], ops)


def torch_blas():
    """The BLAS this process has loaded for torch, asked through OpenBLAS's own
    functions when it is OpenBLAS (Debian's torch calls whatever libblas.so.3 is)."""
    with open("/proc/self/maps") as f:
        paths = sorted({l.split()[-1] for l in f if "blas" in l.rsplit("/", 1)[-1]})
    for path in paths:
        lib = ctypes.CDLL(path)
        if hasattr(lib, "openblas_get_corename"):
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return {"library": lib.openblas_get_config().decode(), "core": lib.openblas_get_corename().decode(),
                    "threads": lib.openblas_get_num_threads(), "path": os.path.realpath(path)}
    return {"library": " ".join(paths) or "none found", "core": "?", "threads": None}


def torch_parallel():
    """torch's thread settings and the BLAS its build names (torch.__config__)."""
    info = {}
    for line in torch.__config__.parallel_info().splitlines():
        if ":" in line and not line.startswith("Environment"):
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    build = torch.__config__.show()
    blas_info = next((part.split("=", 1)[1] for part in build.replace(",", " ").split() if part.startswith("BLAS_INFO=")), "?")
    return {"at::get_num_threads": info.get("at::get_num_threads()"), "parallel_backend": info.get("ATen parallel backend"),
            "mkldnn": torch.backends.mkldnn.is_available(), "BLAS_INFO": blas_info}


GEMM_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm"}


def gemm_share(ops, is_gemm):
    total = sum(o["seconds"] for o in ops)
    gemm = sum(o["seconds"] for o in ops if is_gemm(o["op"]))
    return gemm, total


def print_profile(title, ops, steps, top=14):
    ops = sorted(ops, key=lambda o: -o["seconds"])
    total = sum(o["seconds"] for o in ops)
    print(f"\n{title}: {total * 1e3 / steps:.1f} ms of ops per step")
    print(f"  {'op':<44}{'calls/step':>11}{'ms/step':>9}{'share':>7}")
    for o in ops[:top]:
        print(f"  {o['op'][:44]:<44}{o['calls'] / steps:>11.1f}{o['seconds'] * 1e3 / steps:>9.2f}"
              f"{100 * o['seconds'] / total:>6.1f}%")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/synthetic.json")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--profile", action="store_true",
                    help="also time PyTorch's ops (autograd profiler; its overhead counts in its tokens/s) "
                         "and print both sides' per-op tables")
    ap.add_argument("--out", help="result JSON (default benchmarks/results/cpu_vs_torch.json)")
    a = ap.parse_args()
    if a.steps <= WARMUP_STEPS:
        sys.exit(f"cpu_vs_torch: --steps must exceed the {WARMUP_STEPS} warm-up steps")
    model_cfg, train, optim, data = resolved_config(os.path.join(ROOT, a.config), a.overrides)
    pad = model_cfg["vocab_pad_to"]
    model_cfg["padded_vocab"] = (model_cfg["vocab"] + pad - 1) // pad * pad

    qj_tps, qj_losses, qj_ops = qj_run(a.build, a.config, a.overrides, a.steps, a.threads)
    torch_tps, torch_losses, torch_threads, torch_ops = torch_run(model_cfg, train, optim, data, a.steps,
                                                                  a.threads, a.profile)
    ratio = qj_tps / torch_tps
    blas = torch_blas()
    runtime = {"qj": {"gemm": qj_ops["gemm"], "blas": qj_ops["blas"], "omp_max_threads": qj_ops["omp_max_threads"]},
               "torch": {"gemm": f"OpenBLAS {blas['core']}" if "OpenBLAS" in blas["library"] else blas["library"],
                         "blas": blas, "threads_seen": torch_threads, **torch_parallel()}}
    qj_gemm, qj_total = gemm_share(qj_ops["ops"], lambda op: op.startswith("matmul"))
    result = {"config": a.config, "overrides": a.overrides, "steps": a.steps, "threads": a.threads,
              "tokens_per_step": train["global_batch"] * model_cfg["seq_len"],
              "qj_tokens_per_s": qj_tps, "torch_tokens_per_s": torch_tps, "ratio": ratio,
              "torch_version": torch.__version__, "runtime": runtime,
              "env": {k: os.environ.get(k) for k in ENV_KEYS},
              "qj_ms_per_step_in_gemm_and_all_ops": [qj_gemm * 1e3 / a.steps, qj_total * 1e3 / a.steps],
              "qj_loss_first_last": [qj_losses[0], qj_losses[-1]],
              "torch_loss_first_last": [torch_losses[0], torch_losses[-1]]}
    if torch_ops:
        gemm, total = gemm_share(torch_ops, lambda op: op in GEMM_OPS)
        result["torch_ms_per_step_in_gemm_and_all_ops"] = [gemm * 1e3 / (a.steps - WARMUP_STEPS),
                                                           total * 1e3 / (a.steps - WARMUP_STEPS)]
        result["qj_ops"], result["torch_ops"] = qj_ops["ops"], torch_ops
    out = a.out or os.path.join(ROOT, "benchmarks", "results", "cpu_vs_torch.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    if torch_ops:
        print_profile("qj-train, all steps (QJ_PROFILE_OPS)", qj_ops["ops"], a.steps)
        print_profile("PyTorch, timed steps (autograd profiler, self CPU time)", torch_ops, a.steps - WARMUP_STEPS)
        for name, key in (("qj-train", "qj_ms_per_step_in_gemm_and_all_ops"),
                          ("PyTorch", "torch_ms_per_step_in_gemm_and_all_ops")):
            gemm, total = result[key]
            print(f"{name}: {gemm:.1f} ms/step in GEMM, {total - gemm:.1f} in other ops")
        print()
    print(f"environment: " + " ".join(f"{k}={v}" for k, v in result["env"].items() if v is not None))
    for side, r in runtime.items():
        b = r["blas"]
        threads = r["omp_max_threads"] if side == "qj" else r["threads_seen"]
        print(f"{side + ':':<7}GEMM {r['gemm']} | BLAS {b['library']} | core {b['core']} | BLAS threads {b['threads']} | "
              f"threads {threads}" + ("" if side == "qj" else f" | {r['parallel_backend']}, BLAS_INFO={r['BLAS_INFO']}"))
    print(f"{'program':<24}{'tokens/s':>12}{'loss first -> last':>26}")
    print(f"{'qj-train':<24}{qj_tps:>12.0f}{qj_losses[0]:>14.3f} -> {qj_losses[-1]:.3f}")
    print(f"{'PyTorch ' + torch.__version__:<24}{torch_tps:>12.0f}{torch_losses[0]:>14.3f} -> {torch_losses[-1]:.3f}")
    print(f"ratio qj / torch: {ratio:.2f}  ({a.threads} threads, {a.steps} steps, first {WARMUP_STEPS} untimed)")


if __name__ == "__main__":
    main()
