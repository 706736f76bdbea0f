"""Bad input to qj-train ends with one clear error line naming the field or file,
exit code 2, and no crash."""
import json
import os
import shutil
import tempfile
import unittest

from qj_paths import SOURCE_DIR, run, tool

TINY_MODEL = {"layers": 1, "hidden": 32, "heads": 4, "vocab": 512, "seq_len": 16}


class CliErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_cli_errors_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "512",
                    "--train-tokens", "20000", "--valid-tokens", "5000"])
        assert made.returncode == 0, made.stderr
        cls.train = os.path.join(corpus, "train")
        cls.valid = os.path.join(corpus, "valid")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write_config(self, config, name="config.json"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config))
        return path

    def good_config(self, **train):
        return {"model": dict(TINY_MODEL),
                "train": {"steps": 2, "global_batch": 2, "micro_batch": 2, "warmup_steps": 1,
                          "eval_every": 0, **train},
                "data": {"train": self.train, "valid": self.valid}}

    def assert_bad_input(self, args, *needles):
        result = run([tool("qj-train")] + args, timeout=120)
        self.assertEqual(result.returncode, 2, msg=result.stdout + result.stderr)
        errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        self.assertEqual(len(errors), 1, msg=result.stderr)
        for needle in needles:
            self.assertIn(needle, result.stderr)
        self.assertNotIn("core dumped", result.stderr)
        return result.stderr

    def test_good_config_trains(self):
        result = run([tool("qj-train"), "--config", self.write_config(self.good_config())], timeout=120)
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        self.assertIn("done:", result.stdout)

    def test_unknown_key_suggests_nearest(self):
        config = self.good_config()
        config["model"]["hiden"] = 64
        self.assert_bad_input(["--config", self.write_config(config)], "model.hiden", "model.hidden")

    def test_wrong_type(self):
        config = self.good_config(lr="fast")
        self.assert_bad_input(["--config", self.write_config(config)], "train.lr")

    def test_out_of_range(self):
        config = self.good_config(steps=-3)
        self.assert_bad_input(["--config", self.write_config(config)], "train.steps")

    def test_hidden_not_divisible_by_heads(self):
        config = self.good_config()
        config["model"]["heads"] = 5
        self.assert_bad_input(["--config", self.write_config(config)], "model.hidden", "model.heads")

    def test_override_of_unknown_key(self):
        path = self.write_config(self.good_config())
        self.assert_bad_input(["--config", path, "--set", "train.lrr=1"], "train.lrr")

    def test_invalid_json(self):
        path = self.write_config('{"model": {"layers": 2,}', name="broken.json")
        self.assert_bad_input(["--config", path], "broken.json")

    def test_missing_config_file(self):
        self.assert_bad_input(["--config", os.path.join(self.tmp, "absent.json")], "absent.json")

    def test_unknown_flag(self):
        self.assert_bad_input(["--confg", "x.json"], "--confg")

    def test_missing_data_file(self):
        config = self.good_config()
        config["data"]["train"] = os.path.join(self.tmp, "nowhere", "train")
        self.assert_bad_input(["--config", self.write_config(config)], "nowhere")

    def test_truncated_data_file(self):
        prefix = os.path.join(self.tmp, "truncated")
        shutil.copy(self.train + ".idx", prefix + ".idx")
        with open(self.train + ".bin", "rb") as src, open(prefix + ".bin", "wb") as dst:
            dst.write(src.read()[:1000])
        config = self.good_config()
        config["data"]["train"] = prefix
        self.assert_bad_input(["--config", self.write_config(config)], "truncated.bin")

    def test_malformed_safetensors(self):
        path = os.path.join(self.tmp, "garbage.safetensors")
        with open(path, "wb") as f:
            f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        self.assert_bad_input(["--config", self.write_config(self.good_config()), "--init-from", path],
                              "garbage.safetensors")

    def test_safetensors_shape_disagrees_with_config(self):
        weights = os.path.join(self.tmp, "h32.safetensors")
        made = run([tool("qj-train"), "--config", self.write_config(self.good_config()),
                    "--export", weights], timeout=120)
        self.assertEqual(made.returncode, 0, msg=made.stderr)
        config = self.good_config()
        config["model"]["hidden"] = 64
        self.assert_bad_input(["--config", self.write_config(config), "--init-from", weights],
                              "h32.safetensors", "wte.weight")


if __name__ == "__main__":
    unittest.main()
