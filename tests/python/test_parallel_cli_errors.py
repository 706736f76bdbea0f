"""qj-train under mpirun: a mesh, batch, schedule or data error that every rank
meets at set-up ends the run quickly with exit code 2 and one line
"error: <message>" naming the offending fields (printed once, by rank 0, with no
"rank N:" since all ranks agree). A good config trains the same under mpirun
as alone, and only rank 0 prints the final "done:" line."""
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from qj_paths import tool

MPIRUN = shutil.which("mpirun")
TIME_LIMIT_S = 60
ENV = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
FINAL_LOSS = re.compile(r"^done: 2 steps in .* \| final loss ([0-9.]+)", re.MULTILINE)

# gpt2 preset, 4 layers, hidden 64, 4 heads sharing 2 kv heads.
TINY_MODEL = {"preset": "gpt2", "layers": 4, "hidden": 64, "heads": 4, "kv_heads": 2,
              "vocab": 512, "seq_len": 16}

Result = collections.namedtuple("Result", "returncode stdout stderr seconds")


def launch(args, ranks=None):
    """Runs qj-train (under mpirun with `ranks` processes, or alone if None).
    A run past TIME_LIMIT_S is killed with its whole process group and fails the test."""
    command = [tool("qj-train")] + args
    if ranks is not None:
        command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError("hung: '%s' ran past %d s\nstderr:\n%s" %
                             (" ".join(command), TIME_LIMIT_S, stderr))
    return Result(process.returncode, stdout, stderr, time.monotonic() - start)


def error_lines(stderr):
    """Our error lines; Open MPI's own banners ("----", "mpirun detected ...") are not counted."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class ParallelCliErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_parallel_cli_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "512",
                               "--train-tokens", "20000", "--valid-tokens", "5000"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        config = {"model": TINY_MODEL,
                  "train": {"steps": 2, "global_batch": 4, "micro_batch": 1, "warmup_steps": 1,
                            "eval_every": 0},
                  "data": {"train": os.path.join(corpus, "train"),
                           "valid": os.path.join(corpus, "valid")},
                  "backend": {"threads": 1}}
        cls.config = os.path.join(cls.tmp, "tiny.json")
        with open(cls.config, "w") as f:
            json.dump(config, f)
        cls.single_process = None  # the run without mpirun, the reference for the others

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, ranks, *overrides):
        args = ["--config", self.config]
        for override in overrides:
            args += ["--set", override]
        return launch(args, ranks)

    def assert_setup_error(self, ranks, overrides, *needles):
        """Exit 2 after one clean error line holding every needle, from ranks that all agreed."""
        result = self.train(ranks, *overrides)
        detail = "np %d, --set %s, %.1f s\nstdout:\n%s\nstderr:\n%s" % (
            ranks, " ".join(overrides), result.seconds, result.stdout, result.stderr)
        self.assertEqual(result.returncode, 2, msg=detail)
        errors = error_lines(result.stderr)
        self.assertEqual(len(errors), 1, msg=detail)
        # Every rank met the same error, so the line names no rank.
        self.assertFalse(errors[0].startswith("error: rank "), msg=detail)
        for needle in needles:
            self.assertIn(needle, errors[0], msg=detail)
        # A set-up error finalises MPI on every rank; it never aborts or crashes.
        for crash in ("MPI_ABORT", "core dumped", "Segmentation", "terminate called"):
            self.assertNotIn(crash, result.stderr, msg=detail)
        self.assertNotIn("training ", result.stdout, msg=detail)
        return errors[0]

    # --- tensor parallelism must split heads and kv heads evenly -----------------

    def test_tp_not_dividing_heads(self):
        self.assert_setup_error(3, ["parallel.tp=3"], "model.heads=4", "parallel.tp=3")

    def test_tp_not_dividing_kv_heads(self):
        self.assert_setup_error(4, ["parallel.tp=4"], "model.kv_heads=2", "parallel.tp=4")

    # --- pipeline stages need layers ----------------------------------------------

    def test_more_pipeline_stages_than_layers(self):
        self.assert_setup_error(4, ["model.layers=2", "parallel.pp=4"],
                                "model.layers=2", "parallel.pp=4")

    # --- the world must be tp x pp x dp ranks -------------------------------------

    def test_world_not_divisible_by_tp(self):
        self.assert_setup_error(3, ["parallel.tp=2", "parallel.dp=2"],
                                "parallel.tp=2", "world of 3 ranks")

    def test_world_smaller_than_the_mesh(self):
        self.assert_setup_error(4, ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2"],
                                "parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "world has 4")

    # --- micro-batches must divide each rank's share of the batch ------------------

    def test_micro_batches_not_dividing_the_batch_with_dp_set(self):
        # Caught by the config check: parallel.dp is in the file.
        self.assert_setup_error(2, ["train.global_batch=6", "train.micro_batch=2", "parallel.dp=2"],
                                "train.global_batch=6", "train.micro_batch=2", "parallel.dp=2")

    def test_micro_batches_not_dividing_the_batch_with_dp_from_the_world(self):
        # Caught by the plan: dp=2 comes from mpirun -np 2.
        self.assert_setup_error(2, ["train.global_batch=6", "train.micro_batch=2"],
                                "train.global_batch=6", "train.micro_batch=2", "dp=2")

    # --- the interleaved schedule --------------------------------------------------

    def test_interleaving_with_too_few_layers(self):
        self.assert_setup_error(
            2, ["parallel.schedule=interleaved", "parallel.virtual_stages=4", "parallel.pp=2"],
            "model.layers=4", "parallel.pp=2", "parallel.virtual_stages=4")

    def test_interleaving_with_fewer_micro_batches_than_stages(self):
        # global_batch 1 / (micro_batch 1 x dp 1) = 1 micro-batch for 2 stages.
        self.assert_setup_error(
            2, ["parallel.schedule=interleaved", "parallel.virtual_stages=2", "parallel.pp=2",
                "train.global_batch=1"],
            "parallel.schedule='interleaved'", "parallel.virtual_stages=2", "parallel.pp=2",
            "train.global_batch", "micro-batches")

    # --- data ------------------------------------------------------------------------

    def test_missing_data_file(self):
        missing = os.path.join(self.tmp, "nowhere", "train")
        self.assert_setup_error(2, ["data.train=" + missing], missing)

    # --- good runs: same loss as one process, "done:" printed once --------------------

    def reference_loss(self):
        if ParallelCliErrors.single_process is None:
            ParallelCliErrors.single_process = self.train(None)
        result = ParallelCliErrors.single_process
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        return float(FINAL_LOSS.search(result.stdout).group(1))

    def assert_trains_like_one_process(self, result, mesh_line):
        detail = "%.1f s\nstdout:\n%s\nstderr:\n%s" % (result.seconds, result.stdout, result.stderr)
        self.assertEqual(result.returncode, 0, msg=detail)
        self.assertEqual(error_lines(result.stderr), [], msg=detail)
        self.assertEqual(result.stdout.count("done:"), 1, msg=detail)  # rank 0 only
        self.assertNotIn("done:", result.stderr, msg=detail)
        self.assertEqual(result.stdout.count(mesh_line), 1, msg=detail)
        loss = FINAL_LOSS.search(result.stdout)
        self.assertIsNotNone(loss, msg=detail)
        # Same data, same initial weights: tp/dp change only the fp32 summation order.
        self.assertAlmostEqual(float(loss.group(1)), self.reference_loss(), delta=2e-3, msg=detail)

    def test_trains_without_mpirun(self):
        self.reference_loss()
        result = ParallelCliErrors.single_process
        self.assertEqual(result.stdout.count("done:"), 1, msg=result.stdout)
        self.assertIn("mesh: tp=1 pp=1 dp=1 (1 ranks)", result.stdout)

    def test_trains_on_one_rank(self):
        self.assert_trains_like_one_process(self.train(1), "mesh: tp=1 pp=1 dp=1 (1 ranks)")

    def test_trains_on_four_ranks_tp2_dp2(self):
        # global_batch 4 = micro_batch 1 x dp 2 x 2 micro-batches per rank.
        self.assert_trains_like_one_process(self.train(4, "parallel.tp=2", "parallel.dp=2"),
                                            "mesh: tp=2 pp=1 dp=2 (4 ranks)")


if __name__ == "__main__":
    unittest.main()
