#!/usr/bin/env python3
"""GPT-2 124M training throughput on one GPU: qj-train against PyTorch.

Runs, one after another and each in its own process (the PyTorch runs are
benchmarks/torch_gpt2_peer.py):
  qj            qj-train, backend.device=cuda, train.precision=--precision (only fp32
                exists now; the flag is passed through so bf16 is measured once it lands)
  fp32          PyTorch, fp32 eager, TF32 off (apples to apples with our fp32)
  bf16          PyTorch, bf16 autocast eager
  bf16-compile  PyTorch, bf16 autocast + torch.compile (the target peer)
All train the model of --config (GPT-2 124M: 12 layers, 768 wide, 12 heads,
seq 1024, vocab 50257 padded to 50304, tied head) on the same windows of a
synthetic corpus made by qj-make-corpus --vocab 50257, with the same global
and micro batch, AdamW (fused in PyTorch) and gradient clipping at 1.0.

Prints tokens/s and MFU of each run and the ratio qj / run, and writes
benchmarks/results/gpu_gpt2_vs_torch.json (copied to $OUT when that is set).
MFU = tokens/s x FLOPs per token / 989e12 for every run, fp32 included: one
peak (H100 SXM dense bf16), so the numbers compare directly. FLOPs per token
are those of training_flops_per_token in src/train/run_plan.cpp
(6 x matmul weights + 6 x layers x seq x hidden for causal attention).

    python3 benchmarks/gpu_gpt2_vs_torch.py [--build build-gpu] [--steps 20]
        [--warmup 3] [--micro-batch 8] [--global-batch 32] [--precision fp32]
        [--runs qj,fp32,bf16,bf16-compile] [--time-budget-s 900]

Each run gets a share of --time-budget-s; a run that overruns it is stopped
and reported from the steps it finished (status "partial"). A failing run
(torch.compile errors, out of memory) is reported and the others go on.
Exit status: 0 when the qj run produced a number, 1 otherwise, 2 on bad
arguments. Try it without a GPU (tiny model, cpu backend, torch on cpu):
    /usr/bin/python3 benchmarks/gpu_gpt2_vs_torch.py --device cpu --build build \\
        --steps 4 --warmup 1 --micro-batch 2 --global-batch 4 --corpus-tokens 200000 \\
        --set model.layers=2 --set model.hidden=64 --set model.heads=4 --set model.seq_len=64
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK_FLOPS = 989e12  # H100 SXM, dense bf16 tensor cores: the one denominator of every MFU
PEAK_NOTE = "989e12 (H100 SXM dense bf16) for every run, fp32 included"
RUN_NAMES = {
    "qj": "qj-train",
    "fp32": "torch fp32 eager (TF32 off)",
    "bf16": "torch bf16 autocast eager",
    "bf16-compile": "torch bf16 autocast + compile",
}
RUN_WEIGHTS = {"qj": 1.0, "fp32": 1.0, "bf16": 0.6, "bf16-compile": 1.6}  # shares of the budget


def fail(message, code=1):
    print(f"gpu_gpt2_vs_torch: ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


# ------------------------------------------------------------ configuration

def resolved_model(config_path, overrides):
    """The model, optim and train sections with the gpt2 preset's defaults for
    keys the file leaves out and the --set overrides applied (the peer's view
    of what qj-train reads from the same file and flags)."""
    try:
        with open(config_path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read config {config_path}: {e}", 2)
    model = {"preset": "gpt2", "layers": 12, "hidden": 768, "heads": 12, "kv_heads": 0,
             "vocab": 50257, "vocab_pad_to": 128, "seq_len": 1024, "ffn_hidden": 0,
             "norm_eps": 1e-5, "bias": True, "tied_embeddings": True, **cfg.get("model", {})}
    optim = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, **cfg.get("optim", {})}
    train = {"lr": 6e-4, "grad_clip": 1.0, **cfg.get("train", {})}
    for o in overrides:
        key, sep, value = o.partition("=")
        section, _, name = key.partition(".")
        if not sep or section not in ("model", "optim", "train") or not name:
            fail(f"--set {o!r}: expected model.KEY=VALUE, optim.KEY=VALUE or train.KEY=VALUE", 2)
        try:  # as qj-train reads --set: JSON, else the raw text as a string
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        {"model": model, "optim": optim, "train": train}[section][name] = parsed
    if model["preset"] != "gpt2" or not model["bias"] or not model["tied_embeddings"]:
        fail("the PyTorch peer implements the gpt2 preset (biases, tied head) only", 2)
    if model["hidden"] % model["heads"]:
        fail(f"model.hidden={model['hidden']} is not divisible by model.heads={model['heads']}", 2)
    model["kv_heads"] = model["kv_heads"] or model["heads"]
    if model["kv_heads"] != model["heads"]:
        fail("the PyTorch peer has no grouped-query attention (model.kv_heads must equal heads)", 2)
    model["ffn_hidden"] = model["ffn_hidden"] or 4 * model["hidden"]
    pad = model["vocab_pad_to"]
    model["padded_vocab"] = (model["vocab"] + pad - 1) // pad * pad
    return model, optim, train


def training_flops_per_token(m):
    """The formula of src/train/run_plan.cpp for the gpt2 preset (gelu MLP)."""
    c, f, layers = m["hidden"], m["ffn_hidden"], m["layers"]
    head_dim = c // m["heads"]
    qkv = c * (m["heads"] + 2 * m["kv_heads"]) * head_dim
    per_layer = qkv + c * c + c * f + f * c
    matmul_weights = layers * per_layer + m["padded_vocab"] * c
    return 6.0 * matmul_weights + 6.0 * layers * m["seq_len"] * c


def corpus_prefix(args, split="train"):
    return os.path.join(args.build, "gpt2_bench_corpus", split)


def make_corpus(args, model):
    """A synthetic corpus over the full vocabulary, large enough that no window repeats."""
    needed = args.steps * args.global_batch * model["seq_len"] + 1
    tokens = max(args.corpus_tokens, int(needed * 1.05))
    out = os.path.dirname(corpus_prefix(args))
    tool = os.path.join(args.build, "qj-make-corpus")
    if not os.access(tool, os.X_OK):
        fail(f"{tool} not found: build it first (cmake --build {args.build} --target qj-make-corpus)")
    cmd = [tool, "--output", out, "--vocab", str(model["vocab"]), "--train-tokens", str(tokens),
           "--valid-tokens", "100000"]
    print("gpu_gpt2_vs_torch: making the corpus:", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"qj-make-corpus failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return tokens


# ------------------------------------------------------------ running children

def run_with_timeout(cmd, timeout_s, log_path, cwd=ROOT, env=None):
    """Runs cmd in its own process group, output to log_path; kills the whole
    group (torch.compile's workers included) at the timeout, and also when this
    script is stopped (SIGTERM from an outer `timeout`, Ctrl-C).
    Returns (return code or None on timeout, seconds)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)

        def kill_group():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

        def on_sigterm(signum, frame):
            kill_group()
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            code = p.wait(timeout=max(timeout_s, 1))
        except subprocess.TimeoutExpired:
            kill_group()
            code = None
        except KeyboardInterrupt:
            kill_group()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    return code, time.perf_counter() - start


def remove_stale(path):
    """A previous run's results must not pass for this run's."""
    if os.path.exists(path):
        os.remove(path)


def log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def summarize_steps(step_seconds, losses, tokens_per_step, warmup, code, log_path):
    """tokens/s over the steps after the warm-up, and a status."""
    timed = step_seconds[warmup:]
    result = {"steps_done": len(step_seconds), "timed_steps": len(timed),
              "step_seconds": [round(s, 5) for s in step_seconds],
              "loss_first_last": [losses[0], losses[-1]] if losses else None, "log": log_path}
    if timed:
        result["tokens_per_s"] = tokens_per_step * len(timed) / sum(timed)
    if code == 0 and timed:
        result["status"] = "ok"
    elif timed:
        result["status"] = "partial (timed out)" if code is None else f"partial (exit {code})"
        if code is not None:
            result["error_tail"] = log_tail(log_path)
    else:
        why = "timed out" if code is None else f"exit {code}"
        result["status"] = f"failed ({why}, no timed step)"
        result["error_tail"] = log_tail(log_path)
    return result


def qj_run(args, model, timeout_s, work):
    exe = os.path.join(args.build, "qj-train")
    if not os.access(exe, os.X_OK):
        return {"status": f"failed ({exe} not found: build target qj-train)"}
    prefix = corpus_prefix(args)
    jsonl = os.path.join(work, "qj_metrics.jsonl")
    remove_stale(jsonl)
    sets = [f"train.steps={args.steps}", "train.warmup_steps=1", "train.eval_every=0",
            "train.log_every=1", f"train.global_batch={args.global_batch}",
            f"train.micro_batch={args.micro_batch}", f"train.precision=\"{args.precision}\"",
            "checkpoint.every=0", f"data.train=\"{prefix}\"",
            f"data.valid=\"{corpus_prefix(args, 'valid')}\"",
            "data.shuffle=false", f"backend.device=\"{'cuda' if args.device == 'cuda' else 'cpu'}\""]
    sets += args.overrides
    cmd = [exe, "--config", args.config, "--metrics-jsonl", jsonl]
    for s in sets:
        cmd += ["--set", s]
    log_path = os.path.join(work, "qj_train.log")
    print(f"gpu_gpt2_vs_torch: qj-train ({args.precision}), at most {timeout_s:.0f} s", flush=True)
    code, _ = run_with_timeout(cmd, timeout_s, log_path)
    records = []
    if os.path.exists(jsonl):
        with open(jsonl) as f:
            records = [json.loads(l) for l in f if '"loss"' in l]
    result = summarize_steps([r["ms"] / 1e3 for r in records], [r["loss"] for r in records],
                             args.global_batch * model["seq_len"], args.warmup, code, log_path)
    result["precision"] = args.precision
    if records:  # qj's own MFU uses the backend's peak (cuda_context.cpp), for a cross-check
        result["qj_reported_mfu_last_step"] = records[-1].get("mfu")
    return result


def write_peer_spec(args, work):
    """What benchmarks/torch_gpt2_peer.py needs to train the same model on the same data."""
    model, optim, train = resolved_model(args.config, args.overrides)
    spec = {"model": model, "optim": optim, "train": train, "steps": args.steps,
            "global_batch": args.global_batch, "micro_batch": args.micro_batch,
            "device": args.device, "corpus_prefix": corpus_prefix(args)}
    path = os.path.join(work, "torch_peer_spec.json")
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return path


def torch_run(args, mode, timeout_s, work):
    progress = os.path.join(work, f"torch_{mode}.json")
    log_path = os.path.join(work, f"torch_{mode}.log")
    remove_stale(progress)
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "torch_gpt2_peer.py"),
           "--spec", write_peer_spec(args, work), "--mode", mode, "--result", progress]
    print(f"gpu_gpt2_vs_torch: torch {mode}, at most {timeout_s:.0f} s", flush=True)
    code, _ = run_with_timeout(cmd, timeout_s, log_path)
    state = {}
    if os.path.exists(progress):
        with open(progress) as f:
            state = json.load(f)
    result = summarize_steps(state.get("step_seconds", []), state.get("losses", []),
                             state.get("tokens_per_step", 0), args.warmup, code, log_path)
    for key in ("torch_version", "device_name", "optimizer", "attention", "matmul_precision"):
        if key in state:
            result[key] = state[key]
    return result


# ------------------------------------------------------------ report

def build_result(args, model, runs, flops_per_token, corpus_tokens):
    """The JSON document: settings, and per run tokens/s, MFU and qj / run."""
    qj_tps = runs.get("qj", {}).get("tokens_per_s")
    for name, r in runs.items():
        if "tokens_per_s" in r:
            r["mfu"] = r["tokens_per_s"] * flops_per_token / PEAK_FLOPS
            if name != "qj" and qj_tps:
                r["ratio_qj_over_this"] = qj_tps / r["tokens_per_s"]
    torch_info = next((r for n, r in runs.items() if n != "qj" and "torch_version" in r), {})
    result = {
        "model": {k: model[k] for k in ("layers", "hidden", "heads", "seq_len", "vocab",
                                        "padded_vocab", "ffn_hidden")},
        "global_batch": args.global_batch, "micro_batch": args.micro_batch,
        "steps": args.steps, "warmup_steps_untimed": args.warmup,
        "tokens_per_step": args.global_batch * model["seq_len"],
        "corpus_tokens": corpus_tokens, "device": args.device,
        "device_name": torch_info.get("device_name"), "torch_version": torch_info.get("torch_version"),
        "flops_per_token": flops_per_token, "peak_flops": PEAK_FLOPS, "peak_note": PEAK_NOTE,
        "runs": runs,
    }
    return result


def write_result(args, result):
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(args.output + ".tmp", args.output)
    out = os.environ.get("OUT")
    if out and os.path.isdir(out):
        shutil.copy(args.output, out)


def print_table(args, model, runs, flops_per_token):
    print()
    print(f"GPT-2 {model['layers']}L/{model['hidden']}/{model['heads']}h seq {model['seq_len']}, "
          f"global batch {args.global_batch} x micro {args.micro_batch}, {args.steps} steps "
          f"(first {args.warmup} untimed), {flops_per_token / 1e9:.3f} GFLOP/token, "
          f"MFU against {PEAK_NOTE}")
    print(f"{'run':<34}{'tokens/s':>11}{'MFU':>8}{'qj/run':>8}  {'loss first -> last':<20} status")
    for name, r in runs.items():
        label = RUN_NAMES[name] + (f" {args.device} {r.get('precision')}" if name == "qj" else "")
        tps = f"{r['tokens_per_s']:.0f}" if "tokens_per_s" in r else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        ratio = f"{r['ratio_qj_over_this']:.2f}" if "ratio_qj_over_this" in r else "-"
        lf = r.get("loss_first_last")
        losses = f"{lf[0]:.3f} -> {lf[1]:.3f}" if lf else "-"
        print(f"{label:<34}{tps:>11}{mfu:>8}{ratio:>8}  {losses:<20} {r.get('status', '?')}")
        if "error_tail" in r:
            print("    " + r["error_tail"].rstrip().replace("\n", "\n    "))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "gpt2-124m.json"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build-gpu"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="first steps, not timed")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--global-batch", type=int, default=32)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="qj-train's train.precision (the PyTorch runs are fixed by --runs)")
    ap.add_argument("--runs", default="qj,fp32,bf16,bf16-compile")
    ap.add_argument("--corpus-tokens", type=int, default=4_000_000)
    ap.add_argument("--time-budget-s", type=float, default=900, help="for all runs together")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: a smoke test of this script without a GPU")
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="model.KEY=VALUE, optim.KEY=VALUE or train.KEY=VALUE (JSON or plain "
                         "text), passed to qj-train and the peer")
    ap.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "gpu_gpt2_vs_torch.json"))
    a = ap.parse_args()
    a.build, a.config, a.output = (os.path.abspath(p) for p in (a.build, a.config, a.output))
    a.runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    unknown = [r for r in a.runs if r not in RUN_NAMES]
    if unknown:
        fail(f"--runs: unknown {unknown}; known: {', '.join(RUN_NAMES)}", 2)
    if a.steps <= a.warmup:
        fail(f"--steps {a.steps} must exceed --warmup {a.warmup}", 2)
    if a.micro_batch < 1 or a.global_batch % a.micro_batch:
        fail(f"--global-batch {a.global_batch} must be a multiple of --micro-batch {a.micro_batch}", 2)
    return a


def main():
    args = parse_args()
    model, _, _ = resolved_model(args.config, args.overrides)
    flops_per_token = training_flops_per_token(model)
    corpus_tokens = make_corpus(args, model)
    deadline = time.perf_counter() + args.time_budget_s
    runs = {}
    work = os.path.join(args.build, "gpt2_bench_logs")
    os.makedirs(work, exist_ok=True)
    for i, name in enumerate(args.runs):
        left = deadline - time.perf_counter()
        share = RUN_WEIGHTS[name] / sum(RUN_WEIGHTS[n] for n in args.runs[i:])
        timeout_s = max(left * share, 10)
        runs[name] = (qj_run(args, model, timeout_s, work) if name == "qj"
                      else torch_run(args, name, timeout_s, work))
        print(f"gpu_gpt2_vs_torch: {name}: {runs[name]['status']}", flush=True)
        # After every run, so that a hard stop from outside leaves what was measured.
        write_result(args, build_result(args, model, runs, flops_per_token, corpus_tokens))
    print_table(args, model, runs, flops_per_token)
    print(f"gpu_gpt2_vs_torch: wrote {args.output}")
    return 0 if "tokens_per_s" in runs.get("qj", {}) or "qj" not in args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
