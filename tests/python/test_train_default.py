"""Training the default config on its corpus lowers the validation loss from
log(vocab) to near the corpus's entropy rate (its best achievable loss)."""
import json
import math
import os
import tempfile
import unittest

from qj_paths import SOURCE_DIR, run, tool


class TrainDefault(unittest.TestCase):
    def test_default_config_learns_the_corpus(self):
        corpus_dir = os.path.join(SOURCE_DIR, "data", "synthetic")
        with open(os.path.join(corpus_dir, "corpus.json")) as f:
            corpus = json.load(f)
        best, chance = corpus["entropy_rate_nats"], math.log(corpus["vocab"])
        # Within 15% of the way from the best achievable loss to chance: a model
        # that learned only token frequencies stays near the unigram entropy
        # (about 7.4 nats here), one that learned the order-2 structure gets close
        # to the entropy rate (about 1.1).
        threshold = best + 0.15 * (chance - best)
        with tempfile.TemporaryDirectory() as tmp:
            metrics = os.path.join(tmp, "metrics.jsonl")
            result = run([tool("qj-train"), "--config", os.path.join(SOURCE_DIR, "configs", "default.json"),
                          "--metrics-jsonl", metrics], cwd=SOURCE_DIR, timeout=900)
            self.assertEqual(result.returncode, 0, msg=result.stderr)
            with open(metrics) as f:
                records = [json.loads(line) for line in f]
        steps = [r for r in records if "loss" in r]
        evals = [r for r in records if "valid_loss" in r]
        self.assertGreater(len(evals), 1)
        self.assertAlmostEqual(steps[0]["loss"], chance, delta=0.2)  # GPT-2 init starts near chance
        final = evals[-1]["valid_loss"]
        print(f"validation loss {evals[0]['valid_loss']:.3f} -> {final:.3f}; "
              f"entropy rate {best:.3f}, chance {chance:.3f}, threshold {threshold:.3f}")
        self.assertLess(final, threshold)
        self.assertGreater(final, best - 0.05)  # nothing beats the generating process


if __name__ == "__main__":
    unittest.main()
