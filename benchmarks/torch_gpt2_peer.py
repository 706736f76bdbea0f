#!/usr/bin/env python3
"""The PyTorch peer of benchmarks/gpu_gpt2_vs_torch.py: GPT-2 written the usual
way (nn.Linear, nn.LayerNorm, F.scaled_dot_product_attention(is_causal=True),
tied head), trained with fused AdamW and gradient clipping in one mode:
  fp32          eager, TF32 off (true fp32 GEMMs, as our backend)
  bf16          bf16 autocast, eager
  bf16-compile  bf16 autocast + torch.compile
It reads the windows qj-train reads (no shuffle: sample s is window s of the
corpus, tokens [s T, s T + T + 1)). After every step it rewrites --result with
the step times and losses so far, so a run stopped at a time limit still
reports the steps it finished.

    python3 benchmarks/torch_gpt2_peer.py --spec SPEC.json --mode bf16 --result OUT.json

SPEC.json (written by gpu_gpt2_vs_torch.py): {"model": {...}, "optim": {...},
"train": {...}, "steps", "global_batch", "micro_batch", "device", "corpus_prefix"}.
"""
import argparse
import contextlib
import json
import os
import sys
import time

from torch_fp32 import disable_tf32  # benchmarks/torch_fp32.py

MODES = ("fp32", "bf16", "bf16-compile")


def fail(message):
    print(f"torch_gpt2_peer: ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    fail(f"cannot import torch ({e}): run this with a python3 that has PyTorch")

SDPA = getattr(F, "scaled_dot_product_attention", None)
ATTENTION = ("sdpa(is_causal=True)" if SDPA is not None
             else "manual (this torch has no F.scaled_dot_product_attention)")


def causal_attention(q, k, v):
    if SDPA is not None:
        return SDPA(q, k, v, is_causal=True)
    # Only for trying this script on an old torch without SDPA; the GPU run uses SDPA.
    t = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    return F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v


class CausalSelfAttention(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.heads = m["heads"]
        self.c_attn = nn.Linear(m["hidden"], 3 * m["hidden"])
        self.c_proj = nn.Linear(m["hidden"], m["hidden"])

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = causal_attention(q, k, v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.c_fc = nn.Linear(m["hidden"], m["ffn_hidden"])
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(m["ffn_hidden"], m["hidden"])

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.ln_1 = nn.LayerNorm(m["hidden"], eps=m["norm_eps"])
        self.attn = CausalSelfAttention(m)
        self.ln_2 = nn.LayerNorm(m["hidden"], eps=m["norm_eps"])
        self.mlp = MLP(m)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 with the embedding/head rows padded to m["padded_vocab"]."""

    def __init__(self, m):
        super().__init__()
        self.wte = nn.Embedding(m["padded_vocab"], m["hidden"])
        self.wpe = nn.Embedding(m["seq_len"], m["hidden"])
        self.h = nn.ModuleList(Block(m) for _ in range(m["layers"]))
        self.ln_f = nn.LayerNorm(m["hidden"], eps=m["norm_eps"])
        self.lm_head = nn.Linear(m["hidden"], m["padded_vocab"], bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        # Over all padded columns, as nanoGPT does; targets are < vocab.
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def set_matmul_precision(mode):
    """fp32: true fp32 GEMMs (no TF32), as our backend. The bf16 modes leave
    torch's defaults alone: under autocast every GEMM is bf16 anyway."""
    return disable_tf32(torch) if mode == "fp32" else "torch default (GEMMs bf16 under autocast)"


def make_optimizer(model, train, optim, device):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": optim["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=train["lr"], betas=(optim["beta1"], optim["beta2"]), eps=optim["eps"])
    if device == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "AdamW fused"
        except (TypeError, RuntimeError) as e:
            print(f"fused AdamW unavailable ({e}); using the default implementation", flush=True)
    return torch.optim.AdamW(groups, **kw), "AdamW (not fused)"


def load_tokens(prefix, device):
    """The corpus's uint16 token stream (Megatron .bin) as an int64 tensor."""
    with open(prefix + ".bin", "rb") as f:
        raw = bytearray(f.read())
    tokens = torch.frombuffer(raw, dtype=torch.int16).to(torch.int64) & 0xFFFF
    return tokens.to(device)


def train(spec, mode, result_path):
    m, optim, train_cfg = spec["model"], spec["optim"], spec["train"]
    device = spec["device"]
    if device == "cuda" and not torch.cuda.is_available():
        fail("torch.cuda.is_available() is False: no GPU for the PyTorch runs")
    state = {"mode": mode, "torch_version": torch.__version__,
             "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
             "matmul_precision": set_matmul_precision(mode), "attention": ATTENTION,
             "tokens_per_step": spec["global_batch"] * m["seq_len"],
             "step_seconds": [], "losses": []}
    torch.manual_seed(1234)
    model = GPT(m).to(device)
    opt, state["optimizer"] = make_optimizer(model, train_cfg, optim, device)
    step_model = model
    if mode == "bf16-compile":
        if not hasattr(torch, "compile"):
            fail(f"torch {torch.__version__} has no torch.compile")
        step_model = torch.compile(model)
    autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16) if mode != "fp32"
                else contextlib.nullcontext())
    tokens = load_tokens(spec["corpus_prefix"], device)
    t, mb, gb = m["seq_len"], spec["micro_batch"], spec["global_batch"]
    windows = (tokens.numel() - 1) // t
    offsets = torch.arange(t + 1, device=device)
    accumulation = gb // mb

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for step in range(spec["steps"]):
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for micro in range(accumulation):
            first = step * gb + micro * mb  # the windows qj-train reads (no shuffle)
            starts = (torch.arange(first, first + mb, device=device) % windows) * t
            rows = tokens[starts[:, None] + offsets]
            with autocast:
                loss = step_model(rows[:, :-1], rows[:, 1:])
            (loss / accumulation).backward()
            loss_sum += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg["grad_clip"])
        opt.step()
        loss_value = loss_sum.item() / accumulation
        sync()
        state["step_seconds"].append(time.perf_counter() - start)
        state["losses"].append(loss_value)
        print(f"{mode} step {step + 1}/{spec['steps']}: loss {loss_value:.4f}, "
              f"{state['step_seconds'][-1] * 1e3:.1f} ms", flush=True)
        with open(result_path + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(result_path + ".tmp", result_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    try:
        with open(a.spec) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read --spec {a.spec}: {e}")
    train(spec, a.mode, a.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
