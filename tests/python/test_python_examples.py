"""Every example in examples/ runs as its first lines say, with short settings,
in a fresh environment (no PYTHONPATH: the examples find the package)."""
import os
import re
import shutil
import tempfile
import unittest

from qj_paths import SOURCE_DIR, run, tool
from qj_python import ENV, HAVE_MODULE, MPIRUN, PYTHON, mpirun

EXAMPLES = os.path.join(SOURCE_DIR, "examples")
PLAIN_ENV = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
SHORT = ["--set", "model.layers=2", "--set", "train.warmup_steps=1", "--set", "train.global_batch=8", "--set", "train.micro_batch=4",
         "--set", "train.eval_batches=2"]


@unittest.skipUnless(HAVE_MODULE, "the Python module is not built")
class Examples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_examples_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def example(self, name, *args, launcher=(), threads=2):
        result = run(list(launcher) + [PYTHON, os.path.join(EXAMPLES, name)] + list(args), cwd=SOURCE_DIR,
                     env=dict(PLAIN_ENV, OMP_NUM_THREADS=str(threads)), timeout=600)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        return result.stdout

    def test_first_lines_say_how_to_run(self):
        for name in ("train.py", "finetune.py", "sweep.py", "plan.py"):
            with open(os.path.join(EXAMPLES, name)) as f:
                head = "".join(f.readline() for _ in range(4))
            self.assertIn("examples/" + name, head, name)

    def test_train_prints_the_log_and_plots(self):
        png = os.path.join(self.tmp, "loss.png")
        out = self.example("train.py", "--config", "configs/synthetic.json", "--set", "train.steps=4",
                           "--set", "train.eval_every=2", *SHORT, "--plot", png)
        self.assertEqual(len(re.findall(r"^step +\d+/4 \| loss", out, re.M)), 4, out)
        self.assertIn("validation loss", out)
        self.assertRegex(out, r"done: 4 steps")
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_train_reports_a_bad_override(self):
        result = run([PYTHON, os.path.join(EXAMPLES, "train.py"), "--config", "configs/synthetic.json",
                      "--set", "train.stepz=4"], cwd=SOURCE_DIR, env=PLAIN_ENV, timeout=120)
        self.assertEqual(result.returncode, 2)
        self.assertIn("error: config: unknown key 'train.stepz'", result.stderr)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_train_on_four_ranks_as_the_issue_says(self):
        out = self.example("train.py", "--config", "configs/default.json", "--set", "parallel.tp=2",
                           "--set", "train.steps=3", "--set", "train.eval_every=0", "--set", "train.warmup_steps=1",
                           launcher=mpirun(4), threads=1)
        self.assertIn("mesh: tp=2 pp=1 dp=2 (4 ranks)", out)
        self.assertRegex(out, r"done: 3 steps")

    def test_finetune(self):
        weights = os.path.join(self.tmp, "start.safetensors")
        made = run([tool("qj-train"), "--config", "configs/default.json", "--set", "train.steps=1", "--set", "train.warmup_steps=1",
                    "--set", "train.eval_every=0", "--export", weights], cwd=SOURCE_DIR, env=PLAIN_ENV,
                   timeout=300)
        self.assertEqual(made.returncode, 0, made.stdout + made.stderr)
        out = self.example("finetune.py", "--config", "configs/default.json", "--weights", weights,
                           "--text", "data/brown/text/valid/ca20.txt", "--steps", "3", "--tokens", "4",
                           "--output", os.path.join(self.tmp, "tuned.safetensors"), "--prompt", "The jury")
        self.assertIn("before fine-tuning: 'The jury", out)
        self.assertIn("after fine-tuning: 'The jury", out)
        self.assertRegex(out, r"loss [\d.]+ -> [\d.]+ over 3 steps")
        self.assertTrue(os.path.isfile(os.path.join(self.tmp, "tuned.safetensors")))

    def test_sweep(self):
        out = self.example("sweep.py", "--config", "configs/synthetic.json", "--steps", "3",
                           "--lr", "1e-3", "4e-3", *SHORT)
        rows = re.findall(r"^\s+([\d.]+e-0\d)\s+([\d.]+)\s+([\d.]+)\s+(\d+)", out, re.M)
        self.assertEqual([r[0] for r in rows], ["1.0e-03", "4.0e-03"], out)
        self.assertEqual(out.count("<- best"), 1)

    def test_plan(self):
        out = self.example("plan.py")
        self.assertRegex(out, r"17\d\.\dB parameters")
        self.assertEqual(len(re.findall(r"^tp\d+ pp\d+ .* \d+\.\d$", out, re.M)), 5, out)


if __name__ == "__main__":
    unittest.main()
