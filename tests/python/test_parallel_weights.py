"""Weights in and out of a parallel run: a run on 8 ranks (tp 2 x pp 2 x dp 2)
exports the same Hugging Face file as the single process after the same steps,
and a file imported on 4 ranks (tp 2 x pp 2) and exported again comes back bit
for bit."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

from qj_paths import tool
from torch_reference import read_safetensors

MPIRUN = shutil.which("mpirun")
ENV = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class ParallelWeights(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_parallel_weights_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "500",
                               "--train-tokens", "20000", "--valid-tokens", "5000"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        # eps 1e-4: see tests/mpi/equivalence_matrix.cpp (Adam and rounding noise).
        config = {"model": {"preset": "gpt2", "layers": 4, "hidden": 64, "heads": 4, "kv_heads": 2,
                            "vocab": 500, "seq_len": 16},
                  "train": {"steps": 3, "global_batch": 4, "micro_batch": 1, "warmup_steps": 1,
                            "eval_every": 0},
                  "optim": {"eps": 1e-4},
                  "data": {"train": os.path.join(corpus, "train"), "valid": ""},
                  "backend": {"threads": 1}}
        cls.config = os.path.join(cls.tmp, "tiny.json")
        with open(cls.config, "w") as f:
            json.dump(config, f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, ranks, *args):
        command = [tool("qj-train"), "--config", self.config, *args]
        if ranks:
            command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
        result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=120)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def test_parallel_export_equals_single_process(self):
        self.train(0, "--export", self.path("single.safetensors"))
        self.train(8, "--set", "parallel.tp=2", "--set", "parallel.pp=2", "--export",
                   self.path("mesh.safetensors"))
        single = read_safetensors(self.path("single.safetensors"))
        mesh = read_safetensors(self.path("mesh.safetensors"))
        self.assertEqual(sorted(single), sorted(mesh))
        for name, want in single.items():
            got = mesh[name]
            self.assertEqual(got.shape, want.shape, msg=name)
            error = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)
            # Rounding differs between layouts (the equivalence matrix bounds it at 1e-5
            # on its model); an assembly mistake would be off by O(1).
            self.assertLess(error, 1e-4, msg=name)

    def test_import_then_export_on_a_mesh_is_lossless(self):
        self.train(0, "--export", self.path("start.safetensors"))
        self.train(4, "--set", "parallel.tp=2", "--set", "parallel.pp=2", "--set", "train.steps=0",
                   "--set", "train.warmup_steps=0", "--init-from", self.path("start.safetensors"),
                   "--export", self.path("again.safetensors"))
        start = read_safetensors(self.path("start.safetensors"))
        again = read_safetensors(self.path("again.safetensors"))
        self.assertEqual(sorted(start), sorted(again))
        for name in start:
            np.testing.assert_array_equal(again[name], start[name], err_msg=name)


if __name__ == "__main__":
    unittest.main()
