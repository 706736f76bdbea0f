"""qj-train --export then --init-from gives bit-identical weights: a run that
imports a file and trains zero steps exports the same bytes."""
import os
import tempfile
import unittest

from qj_paths import SOURCE_DIR, run, tool


class WeightsRoundTrip(unittest.TestCase):
    def check_preset(self, preset):
        config = os.path.join(SOURCE_DIR, "configs", "synthetic.json")
        common = ["--config", config, "--set", f"model.preset=\"{preset}\"", "--set", "model.layers=2",
                  "--set", "train.warmup_steps=0", "--set", "train.eval_every=0"]
        with tempfile.TemporaryDirectory() as tmp:
            first, second = os.path.join(tmp, "a.safetensors"), os.path.join(tmp, "b.safetensors")
            trained = run([tool("qj-train")] + common + ["--set", "train.steps=3", "--export", first],
                          cwd=SOURCE_DIR, timeout=300)
            self.assertEqual(trained.returncode, 0, msg=trained.stderr)
            again = run([tool("qj-train")] + common + ["--set", "train.steps=0", "--init-from", first,
                                                       "--export", second], cwd=SOURCE_DIR, timeout=300)
            self.assertEqual(again.returncode, 0, msg=again.stderr)
            with open(first, "rb") as a, open(second, "rb") as b:
                self.assertEqual(a.read(), b.read())

    def test_gpt2(self):
        self.check_preset("gpt2")

    def test_llama(self):
        self.check_preset("llama")


if __name__ == "__main__":
    unittest.main()
