"""qj-ckpt: `info` reports what a checkpoint holds; `verify` passes a fresh one
and names every damaged chunk (file, tensor, byte offset) with exit 1, or
refuses an unusable checkpoint with exit 2; `export` writes the same weights as
`qj-train --export` of the same run, for gpt2 and llama, for a checkpoint saved
by 4 ranks (tp=2 pp=2), and for an encrypted one given its key."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import numpy as np

import checkpoint_files
from qj_paths import run, tool
from torch_reference import read_safetensors

MPIRUN = shutil.which("mpirun")
KEY = "00112233445566778899aabbccddeeff" * 2
WRONG_KEY = "ff" * 32
ENV = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
ENV.pop("QJ_CHECKPOINT_KEY", None)


def tiny_config(corpus, preset):
    model = {"preset": preset, "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "vocab": 97,
             "vocab_pad_to": 1, "seq_len": 16}
    if preset == "llama":
        model["ffn_hidden"] = 96
    return {"model": model,
            "train": {"steps": 3, "global_batch": 4, "micro_batch": 1, "warmup_steps": 1, "eval_every": 0},
            "data": {"train": os.path.join(corpus, "train"), "valid": ""},
            "backend": {"threads": 1}}


def launch(command, env=ENV, timeout=60):
    """Runs a command in its own process group, killed whole if it hangs."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError("hung: " + " ".join(command))
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def ckpt(*args, env=ENV):
    return run([tool("qj-ckpt")] + list(args), env=env, timeout=60)


class CkptTool(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_ckpt_tool_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "97", "--train-tokens", "20000",
                    "--valid-tokens", "2000"], timeout=60)
        assert made.returncode == 0, made.stderr
        cls.corpus = corpus
        cls.gpt2 = cls.train("gpt2", "gpt2")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def train(cls, name, preset, ranks=None, settings=(), env=ENV):
        """Trains 3 steps saving checkpoints (steps 2 and 3) under tmp/name and
        exporting the final weights; returns (checkpoint root, exported file)."""
        config = os.path.join(cls.tmp, name + ".json")
        with open(config, "w") as f:
            json.dump(tiny_config(cls.corpus, preset), f)
        root, weights = os.path.join(cls.tmp, name), os.path.join(cls.tmp, name + ".safetensors")
        command = [tool("qj-train"), "--config", config, "--set", f"checkpoint.dir={json.dumps(root)}",
                   "--set", "checkpoint.every=2", "--export", weights]
        for setting in settings:
            command += ["--set", setting]
        if ranks:
            command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
        trained = launch(command, env=env)
        assert trained.returncode == 0, trained.stdout + trained.stderr
        return root, weights

    def copy_of_newest(self, name):
        """A copy of the gpt2 run's newest step directory, to damage."""
        copy = os.path.join(self.tmp, name)
        shutil.copytree(checkpoint_files.newest(self.gpt2[0]), copy)
        return copy

    def assert_export_equals(self, root, reference, env=ENV, *key_args):
        out = os.path.join(self.tmp, os.path.basename(root) + "_exported.safetensors")
        exported = ckpt("export", root, "--output", out, *key_args, env=env)
        self.assertEqual(exported.returncode, 0, msg=exported.stdout + exported.stderr)
        self.assertIn("step_000000003", exported.stdout)
        got, want = read_safetensors(out), read_safetensors(reference)
        self.assertEqual(sorted(got), sorted(want))
        self.assertFalse(any(name.startswith("optimizer.") for name in got))
        for name in want:
            self.assertEqual(got[name].shape, want[name].shape, msg=name)
            self.assertTrue(np.array_equal(got[name], want[name]), msg=name)
        with open(out, "rb") as a, open(reference, "rb") as b:
            self.assertEqual(a.read(), b.read(), msg="not the same bytes as qj-train --export")
        return out

    # ------------------------------------------------------------ info, help

    def test_help_prints_usage(self):
        shown = ckpt("--help")
        self.assertEqual(shown.returncode, 0)
        self.assertIn("qj-ckpt verify DIR", shown.stdout)

    def test_info_of_a_root_names_the_newest_and_its_layout(self):
        shown = ckpt("info", self.gpt2[0])
        self.assertEqual(shown.returncode, 0, msg=shown.stderr)
        self.assertIn(f"newest of 2 committed checkpoints in {self.gpt2[0]}: ", shown.stdout)
        self.assertIn("checkpoint: " + os.path.join(self.gpt2[0], "step_000000003") + "\n", shown.stdout)
        self.assertIn("step: 3\n", shown.stdout)
        self.assertIn("consumed samples: 12\n", shown.stdout)
        self.assertIn("format version: 1.", shown.stdout)
        self.assertIn("saved layout: tp 1, pp 1, dp 1, zero 0", shown.stdout)
        self.assertIn("encryption: none", shown.stdout)
        self.assertIn("rank_00000.bin", shown.stdout)
        self.assertIn('"preset"', shown.stdout)

    # ------------------------------------------------------------ verify

    def test_verify_passes_a_fresh_checkpoint(self):
        step = checkpoint_files.newest(self.gpt2[0])
        chunks = sum(len(t["chunks"]) for t in checkpoint_files.manifest(step)["tensors"].values())
        checked = ckpt("verify", step)
        self.assertEqual(checked.returncode, 0, msg=checked.stdout + checked.stderr)
        self.assertIn(f"ok: {chunks} chunks in 1 files verified", checked.stdout)

    def test_verify_names_every_flipped_chunk(self):
        step = self.copy_of_newest("flipped")
        tensors = checkpoint_files.manifest(step)["tensors"]
        bad = [("wte.weight", tensors["wte.weight"]["chunks"][0]),
               ("h.1.mlp.c_fc.weight", tensors["h.1.mlp.c_fc.weight"]["chunks"][0])]
        for _, chunk in bad:
            with open(os.path.join(step, chunk["file"]), "r+b") as f:
                f.seek(chunk["offset"] + chunk["length"] // 2)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0x40]))
        checked = ckpt("verify", step)
        self.assertEqual(checked.returncode, 1, msg=checked.stdout + checked.stderr)
        problems = [line for line in checked.stdout.splitlines() if line.startswith("bad:")]
        self.assertEqual(len(problems), 2, msg=checked.stdout)
        for (tensor, chunk), line in zip(sorted(bad), sorted(problems)):
            self.assertIn(f"file {chunk['file']}, tensor {tensor}, byte offset {chunk['offset']}", line)
            self.assertIn("SHA-256 mismatch", line)

    def test_verify_names_the_chunks_of_a_truncated_shard(self):
        step = self.copy_of_newest("truncated")
        shard = os.path.join(step, "rank_00000.bin")
        size = os.path.getsize(shard)
        os.truncate(shard, size // 2)
        checked = ckpt("verify", step)
        self.assertEqual(checked.returncode, 1, msg=checked.stdout + checked.stderr)
        self.assertIn(f"file rank_00000.bin: {size // 2} bytes on disk, the manifest records {size} (truncated)",
                      checked.stdout)
        tensors = checkpoint_files.manifest(step)["tensors"]
        past_end = [(name, c) for name, t in tensors.items() for c in t["chunks"]
                    if c["offset"] + c["length"] > size // 2]
        self.assertTrue(past_end)
        for name, c in past_end:
            self.assertIn(f"file rank_00000.bin, tensor {name}, byte offset {c['offset']}", checked.stdout)
        self.assertIn("truncated", checked.stdout)

    def test_verify_names_the_chunks_of_a_deleted_shard(self):
        step = self.copy_of_newest("deleted_shard")
        os.remove(os.path.join(step, "rank_00000.bin"))
        checked = ckpt("verify", step)
        self.assertEqual(checked.returncode, 1, msg=checked.stdout + checked.stderr)
        self.assertIn("file rank_00000.bin: missing", checked.stdout)
        self.assertIn("file rank_00000.bin, tensor wpe.weight, byte offset", checked.stdout)
        self.assertIn("cannot open", checked.stdout)

    def test_verify_refuses_a_deleted_or_damaged_manifest(self):
        step = self.copy_of_newest("no_manifest")
        os.remove(os.path.join(step, "manifest.json"))
        checked = ckpt("verify", step)
        self.assertEqual(checked.returncode, 2, msg=checked.stdout + checked.stderr)
        self.assertRegex(checked.stderr, r"^error: .*manifest\.json")

        step = self.copy_of_newest("damaged_manifest")
        path = os.path.join(step, "manifest.json")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('"step": 3', '"step": 4'))
        checked = ckpt("verify", step)
        self.assertEqual(checked.returncode, 2, msg=checked.stdout + checked.stderr)
        self.assertEqual(checked.stderr.count("error:"), 1)
        self.assertIn("the manifest is damaged", checked.stderr)

    def test_refuses_a_newer_format_and_a_missing_directory(self):
        step = self.copy_of_newest("newer")
        path = os.path.join(step, "manifest.json")
        with open(path) as f:
            manifest = json.load(f)
        manifest["format_version"] = "2.0"
        with open(path, "w") as f:
            json.dump(manifest, f)
        for command in ("info", "verify"):
            refused = ckpt(command, step)
            self.assertEqual(refused.returncode, 2)
            self.assertIn("checkpoint format 2.0 is newer", refused.stderr)
        missing = ckpt("info", os.path.join(self.tmp, "nowhere"))
        self.assertEqual(missing.returncode, 2)
        self.assertIn("no such checkpoint or directory", missing.stderr)

    # ------------------------------------------------------------ export

    def test_export_equals_qj_train_export_gpt2(self):
        root, weights = self.gpt2
        out = self.assert_export_equals(root, weights)
        saved = checkpoint_files.read_tensors(checkpoint_files.newest(root))
        got = read_safetensors(out)
        self.assertEqual(sorted(got), sorted(n for n in saved if not n.startswith("optimizer.")))

    def test_export_equals_qj_train_export_llama(self):
        root, weights = self.train("llama", "llama")
        self.assert_export_equals(root, weights)
        self.assertIn("model.layers.0.self_attn.q_proj.weight", read_safetensors(weights))

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_export_of_a_4_rank_checkpoint(self):
        root, weights = self.train("gpt2_tp2_pp2", "gpt2", ranks=4, settings=("parallel.tp=2", "parallel.pp=2"))
        shown = ckpt("info", root)
        self.assertIn("saved layout: tp 2, pp 2, dp 1", shown.stdout)
        self.assertEqual(ckpt("verify", root).returncode, 0)
        self.assert_export_equals(root, weights)

    def test_encrypted_export_needs_the_right_key(self):
        env = dict(ENV, QJ_CHECKPOINT_KEY=KEY)
        root, weights = self.train("encrypted", "gpt2", settings=('checkpoint.encryption="aes-256-gcm"',),
                                   env=env)
        shown = ckpt("info", root)
        self.assertIn("encryption: aes-256-gcm", shown.stdout)
        self.assertEqual(ckpt("verify", root, env=env).returncode, 0)
        out = self.assert_export_equals(root, weights, env)
        # The same run unencrypted: the same weights.
        plain = read_safetensors(self.gpt2[1])
        for name, values in read_safetensors(out).items():
            self.assertTrue(np.array_equal(values, plain[name]), msg=name)
        key_file = os.path.join(self.tmp, "key.hex")
        with open(key_file, "w") as f:
            f.write(KEY + "\n")
        self.assert_export_equals(root, weights, ENV, "--key-file", key_file)

        target = os.path.join(self.tmp, "refused.safetensors")
        no_key = ckpt("export", root, "--output", target)
        self.assertEqual(no_key.returncode, 2)
        self.assertRegex(no_key.stderr, r"^error: checkpoint .* is encrypted \(aes-256-gcm\): give its key")
        wrong = ckpt("export", root, "--output", target, env=dict(ENV, QJ_CHECKPOINT_KEY=WRONG_KEY))
        self.assertEqual(wrong.returncode, 2)
        self.assertIn("wrong key", wrong.stderr)
        self.assertEqual(wrong.stderr.count("error:"), 1)
        self.assertEqual(ckpt("verify", root).returncode, 2)
        self.assertFalse(os.path.exists(target))


if __name__ == "__main__":
    unittest.main()
