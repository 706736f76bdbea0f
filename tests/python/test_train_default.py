"""The shipped configs learn their corpora.

Synthetic (configs/synthetic.json): the validation loss falls from log(vocab) to
near the corpus's entropy rate, its best achievable loss.

Brown (configs/default.json, the README's command): the validation loss falls at
every evaluation, from log(50257) to clearly below the loss of the best model
that ignores context: the unigram (token frequency) model of the Brown training
tokens, scored on the same validation tokens the trainer evaluates. Both are
computed here with numpy from the .bin files."""
import json
import math
import os
import tempfile
import unittest

import numpy as np

from gpt2_text import read_indexed
from qj_paths import SOURCE_DIR, run, tool

GPT2_VOCAB = 50257
# How far below the context-free model the Brown run must end (measured: 7.02
# against 7.60, a margin of 0.58 nats).
MARGIN_NATS = 0.25


def train(config, extra=(), ranks=0):
    """Runs qj-train on a config of configs/ (on `ranks` ranks through scripts/launch.sh
    when given); returns (step records, eval records)."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "metrics.jsonl")
        args = [tool("qj-train"), "--config", os.path.join(SOURCE_DIR, "configs", config), "--metrics-jsonl", metrics,
                *extra]
        if ranks:
            args = ["bash", os.path.join(SOURCE_DIR, "scripts", "launch.sh"), str(ranks), *args]
        result = run(args, cwd=SOURCE_DIR, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        with open(metrics) as f:
            records = [json.loads(line) for line in f]
    return [r for r in records if "loss" in r], [r for r in records if "valid_loss" in r]


def brown_tokens(split):
    _, sequences = read_indexed(os.path.join(SOURCE_DIR, "data", "brown", split))
    return np.concatenate(sequences).astype(np.int64)


def entropy_nats(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def unigram_loss_nats(train_tokens, targets, vocab):
    """Mean -log p(target) under the training tokens' frequencies (add-alpha
    smoothed, the best of a few alphas): what a model without context scores."""
    counts = np.bincount(train_tokens, minlength=vocab).astype(np.float64)
    losses = [float(-np.log(((counts + a) / (counts.sum() + a * vocab))[targets]).mean())
              for a in (0.01, 0.1, 0.5, 1.0, 2.0)]
    return min(losses)


class TrainDefault(unittest.TestCase):
    def test_synthetic_config_learns_the_corpus(self):
        corpus_dir = os.path.join(SOURCE_DIR, "data", "synthetic")
        with open(os.path.join(corpus_dir, "corpus.json")) as f:
            corpus = json.load(f)
        best, chance = corpus["entropy_rate_nats"], math.log(corpus["vocab"])
        # Within 15% of the way from the best achievable loss to chance: a model
        # that learned only token frequencies stays near the unigram entropy
        # (about 7.4 nats here), one that learned the order-2 structure gets close
        # to the entropy rate (about 1.1).
        threshold = best + 0.15 * (chance - best)
        steps, evals = train("synthetic.json")
        self.assertGreater(len(evals), 1)
        self.assertAlmostEqual(steps[0]["loss"], chance, delta=0.2)  # GPT-2 init starts near chance
        final = evals[-1]["valid_loss"]
        print(f"synthetic: validation loss {evals[0]['valid_loss']:.3f} -> {final:.3f}; "
              f"entropy rate {best:.3f}, chance {chance:.3f}, threshold {threshold:.3f}")
        self.assertLess(final, threshold)
        self.assertGreater(final, best - 0.05)  # nothing beats the generating process

    def test_default_config_learns_brown_from_context(self):
        self.assertTrue(os.path.exists(os.path.join(SOURCE_DIR, "data", "brown", "train.idx")),
                        "data/brown is missing: run scripts/setup.sh")
        with open(os.path.join(SOURCE_DIR, "configs", "default.json")) as f:
            config = json.load(f)
        model, train_section = config["model"], config["train"]
        # The trainer evaluates the first eval_batches * micro_batch windows of
        # valid (no shuffling): targets are tokens 1 .. windows * seq_len.
        windows = train_section["eval_batches"] * train_section["micro_batch"]
        targets = brown_tokens("valid")[1:1 + windows * model["seq_len"]]
        train_tokens = brown_tokens("train")
        context_free = unigram_loss_nats(train_tokens, targets, GPT2_VOCAB)
        threshold = context_free - MARGIN_NATS
        chance = math.log(GPT2_VOCAB)

        steps, evals = train("default.json")
        self.assertGreater(len(evals), 2)
        self.assertAlmostEqual(steps[0]["loss"], chance, delta=0.2)  # GPT-2 init starts near chance
        losses = [e["valid_loss"] for e in evals]
        print(f"brown: validation loss {' -> '.join(f'{l:.3f}' for l in losses)}; unigram model on the same "
              f"tokens {context_free:.3f}, unigram entropy of train "
              f"{entropy_nats(np.bincount(train_tokens)):.3f}, chance {chance:.3f}, threshold {threshold:.3f}")
        self.assertTrue(all(b < a for a, b in zip(losses, losses[1:])), f"validation loss did not fall: {losses}")
        self.assertLess(losses[-1], threshold)

        # The README's command: the same config on 4 ranks (tp 2 x dp 2). Its first 60
        # steps (the warm-up, whose learning rates do not depend on the step count)
        # follow the single process's.
        parallel, _ = train("default.json", ["--set", "parallel.tp=2", "--set", "train.steps=60"], ranks=4)
        self.assertEqual(len(parallel), 60)
        for one, four in zip(steps, parallel):
            self.assertAlmostEqual(four["loss"], one["loss"], delta=1e-3 * one["loss"], msg=f"step {one['step']}")



if __name__ == "__main__":
    unittest.main()
