#!/usr/bin/env python3
# Fine-tunes Hugging Face-named weights on a text file tokenized here; samples before and after.
#   build/qj-train --config configs/default.json --export brown.safetensors     # weights to start from
#   /usr/bin/python3 examples/finetune.py --config configs/default.json --weights brown.safetensors \
#       --text data/brown/text/valid/ca20.txt --steps 30 --prompt "The jury said"
"""Fine-tuning from Python: tokenize a text, continue training from given weights, compare samples."""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import qianjun as qj  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="the model (its weights' shape), tokenizer and training keys")
    p.add_argument("--weights", required=True, help="Hugging Face-named safetensors file to start from")
    p.add_argument("--text", required=True, help="the text to fine-tune on (UTF-8)")
    p.add_argument("--set", action="append", default=[], metavar="section.key=VALUE",
                   help="overrides one config value (repeatable)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    p.add_argument("--output", default="finetuned.safetensors", help="the fine-tuned weights")
    p.add_argument("--prompt", default="The", help="the text both samples continue")
    p.add_argument("--tokens", type=int, default=32, help="tokens per sample")
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy")
    return p.parse_args()


def main():
    args = parse_args()
    cfg = qj.Config.load(args.config, args.set)
    tokenizer = qj.Tokenizer.gpt2(cfg["tokenizer.encoder"], cfg["tokenizer.vocab"])
    rank = qj.world_rank()

    # Tokenize the text into an indexed dataset (each rank its own copy: no file is shared).
    with open(args.text, encoding="utf-8") as f:
        ids = tokenizer.encode(f.read())
    work = tempfile.mkdtemp(prefix="qj-finetune-")
    prefix = os.path.join(work, "rank{}".format(rank))
    summary = qj.prep([args.text], prefix, threads=1, append_eod=True,
                      encoder_json=cfg["tokenizer.encoder"], vocab_bpe=cfg["tokenizer.vocab"])
    if rank == 0:
        print("{}: {} tokens ({} with <|endoftext|>); the text begins: {!r}".format(
            args.text, len(ids), summary["tokens"], tokenizer.decode(ids[:12])), flush=True)

    def sample(weights, when):
        if rank == 0:
            text = qj.Sampler(cfg, weights).complete(args.prompt, tokenizer, tokens=args.tokens,
                                                     temperature=args.temperature)
            print("{} fine-tuning: {!r}".format(when, args.prompt + text), flush=True)

    sample(args.weights, "before")
    cfg.update({"data.train": prefix, "data.valid": "",  # no validation split: the whole text trains
                "train.steps": args.steps, "train.lr": args.lr, "train.min_lr": args.lr / 10,
                "train.warmup_steps": max(1, args.steps // 10), "train.log_every": max(1, args.steps // 5)})
    trainer = qj.Trainer(cfg, init_from=args.weights)
    first = last = None
    for m in trainer.train():
        first = first or m
        last = m
    trainer.export(args.output)
    if rank == 0:
        print("loss {:.4f} -> {:.4f} over {} steps; weights written to {}".format(
            first["loss"], last["loss"], last["step"], args.output), flush=True)
    sample(args.output, "after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
