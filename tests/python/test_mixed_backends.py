"""Mixed backends in one job (parallel.stage_backends): under mpirun -np 2 a
pp=2 run with stage 0 on the cpu backend and stage 1 on the CPU backend loaded
as a plugin (and the other way round) trains with the single cpu process's
losses, and rank 0 prints each stage's backend coverage. Bad lists end the run
with exit 2 and one error naming parallel.stage_backends, the stage and the
plugin. (The parameters, to the equivalence matrix's tolerance:
ctest -R equivalence_mixed_backends.)"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from qj_paths import BUILD_DIR, tool

MPIRUN = shutil.which("mpirun")
CPU_PLUGIN = os.path.join(BUILD_DIR, "libqj_cpu_plugin.so")
ENV = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
TIME_LIMIT_S = 120


def launch(args, ranks=None):
    """qj-train alone or under mpirun; killed with its process group past TIME_LIMIT_S."""
    command = [tool("qj-train")] + args
    if ranks is not None:
        command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError("hung: %s\n%s" % (" ".join(command), stderr))
    return process.returncode, stdout + stderr


def step_losses(jsonl):
    with open(jsonl) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class MixedBackends(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_mixed_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "97",
                               "--train-tokens", "20000", "--valid-tokens", "2000"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        config = {"model": {"preset": "gpt2", "layers": 4, "hidden": 64, "heads": 4,
                            "vocab": 97, "seq_len": 16},
                  "train": {"steps": 3, "global_batch": 4, "micro_batch": 1, "warmup_steps": 1,
                            "eval_every": 0},
                  "optim": {"eps": 1e-3},
                  "data": {"train": os.path.join(corpus, "train"), "valid": ""},
                  "backend": {"threads": 1}}
        cls.config = os.path.join(cls.tmp, "tiny.json")
        with open(cls.config, "w") as f:
            json.dump(config, f)
        code, output = launch(["--config", cls.config, "--metrics-jsonl",
                               os.path.join(cls.tmp, "single.jsonl")])
        assert code == 0, output
        cls.reference = step_losses(os.path.join(cls.tmp, "single.jsonl"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, stages, ranks=2, extra=()):
        name = "_".join(s.split(":")[0] for s in stages)
        metrics = os.path.join(self.tmp, name + ".jsonl")
        args = ["--config", self.config, "--set", "parallel.pp=2",
                "--set", "parallel.stage_backends=" + json.dumps(stages),
                "--metrics-jsonl", metrics] + list(extra)
        code, output = launch(args, ranks)
        return code, output, metrics

    def assert_trains_like_one_process(self, stages):
        code, output, metrics = self.train(stages)
        self.assertEqual(code, 0, output[-3000:])
        got = step_losses(metrics)
        self.assertEqual(len(got), len(self.reference))
        for step, (g, w) in enumerate(zip(got, self.reference)):
            self.assertLessEqual(abs(g - w), 1e-5 * abs(w), "step %d: %r vs %r" % (step + 1, got, self.reference))
        return output

    def test_cpu_then_plugin_trains_like_one_process_and_names_each_stage_backend(self):
        output = self.assert_trains_like_one_process(["cpu", "plugin:" + CPU_PLUGIN])
        self.assertIn("pipeline stage 0 (rank 0): backend cpu: 31 ops native", output)
        self.assertIn("pipeline stage 1 (rank 1): backend plugin:%s: 31 ops native" % CPU_PLUGIN, output)

    def test_plugin_then_cpu_trains_like_one_process(self):
        output = self.assert_trains_like_one_process(["plugin:" + CPU_PLUGIN, "cpu"])
        self.assertIn("pipeline stage 1 (rank 1): backend cpu: 31 ops native", output)

    def assert_refused(self, ranks, stages, *needles):
        code, output, _ = self.train(stages, ranks)
        self.assertEqual(code, 2, output)
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        self.assertEqual(len(errors), 1, output)
        for needle in needles:
            self.assertIn(needle, errors[0], output)
        self.assertNotIn("Segmentation", output)

    def test_a_list_not_one_per_stage_is_refused_naming_the_key(self):
        self.assert_refused(2, ["cpu"], "parallel.stage_backends lists 1 backends",
                            "parallel.pp=2")

    def test_an_unknown_backend_is_refused_naming_its_stage(self):
        self.assert_refused(2, ["cpu", "gpu"], "parallel.stage_backends[1]='gpu'",
                            "pipeline stage 1", "cpu, cuda or plugin:PATH")

    def test_a_plugin_that_does_not_load_is_refused_naming_the_stage_and_the_plugin(self):
        missing = os.path.join(self.tmp, "missing.so")
        self.assert_refused(2, ["cpu", "plugin:" + missing],
                            "parallel.stage_backends[1]='plugin:%s' (pipeline stage 1, rank 1)" % missing,
                            "no such file")


if __name__ == "__main__":
    unittest.main()
