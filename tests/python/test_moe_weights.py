"""Mixture-of-experts weights in and out through qj-train and qj-ckpt: a Mixtral-
named and a Qwen2-MoE-named (shared experts, balancing bias) export imports and
exports again bit for bit, on one process and on tp 2 x pp 2; a Qwen3-MoE-named
file imports; a checkpoint of a MoE run exports the same bytes as qj-train
--export and resumes bit-exactly, and onto tp 2 x pp 2. With expert parallelism
(experts split over ep ranks) import/export is lossless on dp4 ep4 and tp2 dp2
ep2, and a dp4 ep2 ZeRO checkpoint resumes bit-exactly and onto one process and
dp4 ep4. With expert tensor parallelism (each expert split over tp) import/export
is lossless on tp2 and tp2 dp2 ep2, and a checkpoint reshards onto tp2 expert_tp
and back."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

from qj_paths import tool
from torch_reference import qwen3_names, read_safetensors, write_safetensors

MPIRUN = shutil.which("mpirun")
ENV = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")

MOE = {"preset": "llama", "layers": 3, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn_hidden": 48,
       "vocab": 500, "seq_len": 16, "moe_experts": 4, "moe_top_k": 2, "moe_ffn_hidden": 16,
       "moe_first_dense_layers": 1}
FAMILIES = {
    "mixtral": MOE,
    "qwen2": dict(MOE, moe_shared_experts=1, moe_router="sigmoid", moe_bias_balancing=True),
}


class MoeWeights(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_moe_weights_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "500",
                               "--train-tokens", "20000", "--valid-tokens", "5000"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        for name, model in FAMILIES.items():
            config = {"model": model,
                      "train": {"steps": 4, "global_batch": 4, "micro_batch": 1, "warmup_steps": 1,
                                "eval_every": 0},
                      "optim": {"eps": 1e-4},
                      "data": {"train": os.path.join(corpus, "train"), "valid": ""},
                      "backend": {"threads": 1}}
            with open(os.path.join(cls.tmp, name + ".json"), "w") as f:
                json.dump(config, f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def train(self, family, *args, ranks=0):
        command = [tool("qj-train"), "--config", self.path(family + ".json"), *args]
        if ranks:
            command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
        result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        return result

    def reimport(self, family, source, target, *layout, ranks=0):
        self.train(family, "--set", "train.steps=0", "--set", "train.warmup_steps=0",
                   "--init-from", source, "--export", target, *layout, ranks=ranks)

    def assertSameBytes(self, a, b):
        with open(a, "rb") as x, open(b, "rb") as y:
            self.assertTrue(x.read() == y.read(), f"{a} and {b} differ")

    def assertSameTensors(self, a, b):
        got, want = read_safetensors(a), read_safetensors(b)
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)

    # ---- import and export

    def test_mixtral_names_round_trip(self):
        self.train("mixtral", "--export", self.path("mixtral_a.safetensors"))
        names = read_safetensors(self.path("mixtral_a.safetensors"))
        self.assertEqual(names["model.layers.2.block_sparse_moe.experts.3.w1.weight"].shape, (16, 32))
        self.assertEqual(names["model.layers.2.block_sparse_moe.experts.3.w2.weight"].shape, (32, 16))
        self.assertIn("model.layers.0.mlp.gate_proj.weight", names)  # the first layer is dense
        self.reimport("mixtral", self.path("mixtral_a.safetensors"), self.path("mixtral_b.safetensors"))
        self.assertSameBytes(self.path("mixtral_a.safetensors"), self.path("mixtral_b.safetensors"))

    def test_qwen2_names_with_shared_experts_and_bias_round_trip(self):
        self.train("qwen2", "--export", self.path("qwen2_a.safetensors"))
        names = read_safetensors(self.path("qwen2_a.safetensors"))
        self.assertEqual(names["model.layers.1.mlp.shared_expert.down_proj.weight"].shape, (32, 16))
        self.assertEqual(names["model.layers.1.mlp.experts.0.gate_proj.weight"].shape, (16, 32))
        bias = names["model.layers.2.mlp.gate.e_score_correction_bias"]
        self.assertTrue(np.any(bias != 0), "4 steps of bias balancing should move the bias")
        self.reimport("qwen2", self.path("qwen2_a.safetensors"), self.path("qwen2_b.safetensors"))
        self.assertSameBytes(self.path("qwen2_a.safetensors"), self.path("qwen2_b.safetensors"))

    def test_qwen3_named_file_imports(self):
        self.train("mixtral", "--export", self.path("for_qwen3.safetensors"))
        write_safetensors(self.path("qwen3.safetensors"),
                          qwen3_names(read_safetensors(self.path("for_qwen3.safetensors"))))
        self.reimport("mixtral", self.path("qwen3.safetensors"), self.path("from_qwen3.safetensors"))
        self.assertSameTensors(self.path("from_qwen3.safetensors"), self.path("for_qwen3.safetensors"))

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_import_then_export_on_tp2_pp2_is_lossless(self):
        for family in FAMILIES:
            with self.subTest(family=family):
                start, again = self.path(family + "_start.safetensors"), self.path(family + "_mesh.safetensors")
                self.train(family, "--export", start)
                self.reimport(family, start, again, "--set", "parallel.tp=2", "--set", "parallel.pp=2",
                              ranks=4)
                self.assertSameTensors(again, start)

    # ---- checkpoints

    def test_checkpoint_exports_and_resumes_bit_exactly(self):
        for family in FAMILIES:
            with self.subTest(family=family):
                root, straight = self.path(family + "_ckpt"), self.path(family + "_4.safetensors")
                self.train(family, "--set", f"checkpoint.dir={json.dumps(root)}",
                           "--set", "checkpoint.every=2", "--export", straight)
                exported = self.path(family + "_ckpt.safetensors")
                result = subprocess.run([tool("qj-ckpt"), "export", root, "--output", exported],
                                        capture_output=True, text=True, env=ENV, timeout=120)
                self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
                self.assertSameBytes(exported, straight)
                step2 = os.path.join(root, "step_000000002")
                resumed = self.path(family + "_resumed.safetensors")
                self.train(family, "--set", f"checkpoint.resume={json.dumps(step2)}",
                           "--set", f"checkpoint.dir={json.dumps(root + '_again')}",
                           "--export", resumed)
                self.assertSameBytes(resumed, straight)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_checkpoint_reshards_onto_tp2_pp2(self):
        family = "qwen2"
        root, straight = self.path("reshard_ckpt"), self.path("reshard_4.safetensors")
        self.train(family, "--set", f"checkpoint.dir={json.dumps(root)}", "--set", "checkpoint.every=2",
                   "--export", straight)
        resumed = self.path("reshard_resumed.safetensors")
        self.train(family, "--set", "parallel.tp=2", "--set", "parallel.pp=2",
                   "--set", f"checkpoint.resume={json.dumps(os.path.join(root, 'step_000000002'))}",
                   "--set", f"checkpoint.dir={json.dumps(root + '_mesh')}", "--export", resumed,
                   ranks=4)
        self.assertClose(resumed, straight)

    # ---- expert parallelism: the experts split over ep ranks

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_import_then_export_with_expert_parallelism_is_lossless(self):
        layouts = {"dp4 ep4": ["parallel.dp=4", "parallel.ep=4"],
                   "tp2 dp2 ep2": ["parallel.tp=2", "parallel.dp=2", "parallel.ep=2"]}
        for family in FAMILIES:
            start = self.path(family + "_ep_start.safetensors")
            self.train(family, "--export", start)
            for name, layout in layouts.items():
                with self.subTest(family=family, layout=name):
                    again = self.path(family + "_" + name.replace(" ", "_") + ".safetensors")
                    sets = [a for o in layout for a in ("--set", o)]
                    self.reimport(family, start, again, *sets, ranks=4)
                    self.assertSameTensors(again, start)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_expert_parallel_checkpoint_resumes_bit_exactly_and_reshards(self):
        family = "qwen2"
        ep = ["--set", "parallel.dp=4", "--set", "parallel.ep=2", "--set", "optim.zero=1"]
        root, straight = self.path("ep_ckpt"), self.path("ep_4.safetensors")
        self.train(family, *ep, "--set", f"checkpoint.dir={json.dumps(root)}",
                   "--set", "checkpoint.every=2", "--export", straight, ranks=4)
        step2 = os.path.join(root, "step_000000002")
        # The same layout continues bit for bit.
        resumed = self.path("ep_resumed.safetensors")
        self.train(family, *ep, "--set", f"checkpoint.resume={json.dumps(step2)}",
                   "--set", f"checkpoint.dir={json.dumps(root + '_again')}", "--export", resumed,
                   ranks=4)
        self.assertSameBytes(resumed, straight)
        # The checkpoint holds the whole model: one process and ep4 take it up.
        for name, layout, ranks in [("single", [], 0),
                                    ("dp4_ep4", ["--set", "parallel.dp=4", "--set", "parallel.ep=4"], 4)]:
            with self.subTest(layout=name):
                other = self.path("ep_on_" + name + ".safetensors")
                self.train(family, *layout, "--set", f"checkpoint.resume={json.dumps(step2)}",
                           "--set", f"checkpoint.dir={json.dumps(root + '_' + name)}",
                           "--export", other, ranks=ranks)
                self.assertClose(other, straight)

    # ---- expert tensor parallelism: each expert's MLP split over tp

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_import_then_export_with_expert_tp_is_lossless(self):
        layouts = {"tp2 expert_tp": (["parallel.tp=2", "parallel.expert_tp=2"], 2),
                   "tp2 dp2 ep2 expert_tp": (["parallel.tp=2", "parallel.dp=2", "parallel.ep=2",
                                              "parallel.expert_tp=2"], 4)}
        for family in FAMILIES:
            start = self.path(family + "_etp_start.safetensors")
            self.train(family, "--export", start)
            for name, (layout, ranks) in layouts.items():
                with self.subTest(family=family, layout=name):
                    again = self.path(family + "_" + name.replace(" ", "_") + ".safetensors")
                    sets = [a for o in layout for a in ("--set", o)]
                    self.reimport(family, start, again, *sets, ranks=ranks)
                    self.assertSameTensors(again, start)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_checkpoint_reshards_onto_expert_tp_and_back(self):
        family = "qwen2"
        etp = ["--set", "parallel.tp=2", "--set", "parallel.expert_tp=2"]
        root, straight = self.path("etp_ckpt"), self.path("etp_4.safetensors")
        self.train(family, "--set", f"checkpoint.dir={json.dumps(root)}", "--set", "checkpoint.every=2",
                   "--export", straight)
        step2 = os.path.join(root, "step_000000002")
        onto = self.path("etp_resumed.safetensors")
        self.train(family, *etp, "--set", f"checkpoint.resume={json.dumps(step2)}",
                   "--set", f"checkpoint.dir={json.dumps(root + '_etp')}", "--export", onto, ranks=2)
        self.assertClose(onto, straight)
        # A checkpoint written split over tp resumes on one process.
        back = self.path("etp_back.safetensors")
        self.train(family, "--set", f"checkpoint.resume={json.dumps(os.path.join(root + '_etp', 'step_000000004'))}",
                   "--set", "train.steps=4", "--set", f"checkpoint.dir={json.dumps(root + '_back')}",
                   "--export", back)
        self.assertClose(back, onto, tolerance=1e-6)

    def assertClose(self, a, b, tolerance=1e-3):
        got, want = read_safetensors(a), read_safetensors(b)
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            error = np.max(np.abs(got[name] - want[name])) / max(np.max(np.abs(want[name])), 1e-30)
            # Two steps on another layout round differently; a misplaced expert is off by O(1).
            self.assertLess(error, tolerance, msg=name)


if __name__ == "__main__":
    unittest.main()
