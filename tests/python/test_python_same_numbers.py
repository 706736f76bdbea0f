"""examples/train.py (the Python module) and build/qj-train trained on the same
config give identical numbers: every step's loss and gradient norm and every
validation loss in qj-train's log and JSONL records, bit for bit as printed,
in one process, on 2 ranks (dp 2) and on 4 ranks (tp 2 x dp 2) under mpirun."""
import json
import os
import re
import shutil
import tempfile
import unittest

from qj_paths import SOURCE_DIR, run, tool
from qj_python import ENV, HAVE_MODULE, MPIRUN, PYTHON, mpirun

TRAIN_PY = os.path.join(SOURCE_DIR, "examples", "train.py")
# configs/synthetic.json, shortened: 6 steps, two evaluations.
SETTINGS = ["--config", os.path.join(SOURCE_DIR, "configs", "synthetic.json"),
            "--set", "model.layers=2", "--set", "model.seq_len=64", "--set", "train.steps=6",
            "--set", "train.global_batch=8", "--set", "train.micro_batch=2",
            "--set", "train.warmup_steps=2", "--set", "train.eval_every=3", "--set", "train.eval_batches=2"]
LOG_LINE = re.compile(r"^step +(\d+)/\d+ \| loss ([\d.]+) \| lr ([\de.+-]+) \| grad norm ([\d.]+)", re.M)
VALID_LINE = re.compile(r"^step (\d+) \| validation loss ([\d.]+)", re.M)


def numbers(jsonl_path, log):
    """What must agree: the JSONL records less timings, and the log's numbers."""
    records = []
    with open(jsonl_path) as f:
        for line in f:
            r = json.loads(line)
            records.append({k: v for k, v in r.items() if k not in ("ms", "tokens_per_s", "mfu")})
    return records, LOG_LINE.findall(log), VALID_LINE.findall(log)


@unittest.skipUnless(HAVE_MODULE, "the Python module is not built")
class SameNumbers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_same_numbers_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train_both(self, name, launcher, extra, threads):
        env = dict(ENV, OMP_NUM_THREADS=str(threads))
        results = {}
        for program in ("qj-train", "train.py"):
            jsonl = os.path.join(self.tmp, "{}_{}.jsonl".format(name, program))
            command = [tool("qj-train")] if program == "qj-train" else [PYTHON, TRAIN_PY]
            result = run(launcher + command + SETTINGS + extra + ["--metrics-jsonl", jsonl],
                         cwd=SOURCE_DIR, env=env, timeout=600)
            self.assertEqual(result.returncode, 0, msg=program + ":\n" + result.stdout + result.stderr)
            results[program] = numbers(jsonl, result.stdout)
        records, log, valid = results["qj-train"]
        self.assertEqual(len(records), 8)  # 6 steps and 2 evaluations
        self.assertEqual(len(log), 6)
        self.assertEqual(len(valid), 2)
        self.assertEqual(results["train.py"], results["qj-train"])

    def test_one_process(self):
        self.train_both("np1", [], [], threads=2)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_two_ranks_data_parallel(self):
        self.train_both("np2", mpirun(2), [], threads=1)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_four_ranks_tensor_parallel(self):
        self.train_both("np4_tp2", mpirun(4), ["--set", "parallel.tp=2"], threads=1)


if __name__ == "__main__":
    unittest.main()
