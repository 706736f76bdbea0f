"""The cpu backend's peak FLOP/s (the MFU denominator) is measured once per
machine and cached; an MFU above 100% is never printed without a warning."""
import json
import os
import shutil
import tempfile
import unittest

from qj_paths import run, tool

TINY = {"model": {"layers": 1, "hidden": 32, "heads": 4, "vocab": 512, "seq_len": 16},
        "train": {"steps": 3, "global_batch": 2, "micro_batch": 2, "warmup_steps": 1,
                  "eval_every": 0}}


class PeakFlops(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_peak_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "512",
                    "--train-tokens", "20000", "--valid-tokens", "5000"])
        assert made.returncode == 0, made.stderr
        config = dict(TINY, data={"train": os.path.join(corpus, "train"),
                                  "valid": os.path.join(corpus, "valid")})
        cls.config = os.path.join(cls.tmp, "config.json")
        with open(cls.config, "w") as f:
            json.dump(config, f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, cache):
        env = dict(os.environ, QJ_PEAK_FLOPS_CACHE=cache, OMP_NUM_THREADS="1")
        result = run([tool("qj-train"), "--config", self.config], env=env, timeout=120)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        return result

    def test_measured_once_then_read_from_the_cache(self):
        cache = os.path.join(self.tmp, "peak.json")
        first = self.train(cache)
        with open(cache) as f:
            entries = json.load(f)
        self.assertEqual(len(entries), 1)
        (key, peak), = entries.items()
        self.assertIn("1 threads", key)
        self.assertGreater(peak, 1e8)
        self.assertNotIn("warning: MFU", first.stderr)
        # A peak far below what a step achieves: the cache is what the run uses,
        # and the impossible MFU comes with one warning naming the cause.
        with open(cache, "w") as f:
            json.dump({key: 1e6}, f)
        second = self.train(cache)
        warnings = [l for l in second.stderr.splitlines() if l.startswith("warning: MFU")]
        self.assertEqual(len(warnings), 1, msg=second.stderr)
        self.assertIn("above 100%", warnings[0])
        self.assertIn("(0.001 GFLOP/s for the job)", warnings[0])
        self.assertIn("cpu_peak_flops.json", warnings[0])
        with open(cache) as f:
            self.assertEqual(json.load(f), {key: 1e6})  # read, not measured again

    def test_a_damaged_cache_is_measured_again(self):
        cache = os.path.join(self.tmp, "damaged.json")
        with open(cache, "w") as f:
            f.write("{not json")
        self.train(cache)
        with open(cache) as f:
            (peak,) = json.load(f).values()
        self.assertGreater(peak, 1e8)


if __name__ == "__main__":
    unittest.main()
