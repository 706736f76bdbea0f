"""Checkpoints under faults: a save killed at any phase leaves the last committed
checkpoint usable and the restarted run ends bit for bit where an uninterrupted
one does; damaged, tampered or mis-keyed checkpoints are reported and never
loaded; encrypted ones hold no plaintext; bad input ends with exit code 2.
tests/python/checkpoint_files.py is the independent reader the results are
checked with."""
import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

from checkpoint_files import manifest, read_tensors
from qj_paths import tool

MPIRUN = shutil.which("mpirun")
PHASES = ["before_shards", "mid_shard", "after_shards", "before_rename", "after_rename"]
KEY = "6b" * 32
OTHER_KEY = "c3" * 32
# Small enough for a manifest (about 31 KB here), far smaller than a shard (about 1.2 MB).
FILE_SIZE_LIMIT = 40000


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QJ_CHECKPOINT")}
    env.update(OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def step_dir(root, step):
    return os.path.join(root, "step_%09d" % step)


def render(body):
    """The manifest's hashed rendering: nlohmann::json::dump() without indent."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def manifest_hash(m):
    body = {k: v for k, v in m.items() if k != "manifest_sha256"}
    return hashlib.sha256(render(body).encode("utf-8")).hexdigest()


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def metrics(path):
    """(step, loss, grad_norm, lr) of every step a run logged."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in rows if "loss" in r]


class CheckpointFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_checkpoint_faults_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "97",
                               "--train-tokens", "20000", "--valid-tokens", "2000"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        cls.config = cls.write_config("tiny.json", hidden=64, train=os.path.join(corpus, "train"))
        cls.config32 = cls.write_config("tiny32.json", hidden=32, train=os.path.join(corpus, "train"))
        # The uninterrupted run every test compares against, and an encrypted twin.
        cls.reference = cls.path("reference")
        cls.reference_metrics = cls.path("reference.jsonl")
        result = cls.train_in(cls.reference, "--metrics-jsonl", cls.reference_metrics)
        assert result.returncode == 0, result.stdout + result.stderr
        cls.reference_tensors = {s: read_tensors(step_dir(cls.reference, s)) for s in (2, 4, 6)}
        cls.encrypted = cls.path("encrypted")
        result = cls.train_in(cls.encrypted, *cls.aes(), env=base_env(QJ_CHECKPOINT_KEY=KEY))
        assert result.returncode == 0, result.stdout + result.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def write_config(cls, name, hidden, train):
        config = {"model": {"preset": "gpt2", "layers": 2, "hidden": hidden, "heads": 4, "kv_heads": 2,
                            "vocab": 97, "vocab_pad_to": 1, "seq_len": 16},
                  "train": {"steps": 6, "global_batch": 4, "micro_batch": 1, "warmup_steps": 1,
                            "eval_every": 0},
                  "data": {"train": train, "valid": ""},
                  "backend": {"threads": 1}}
        path = cls.path(name)
        with open(path, "w") as f:
            json.dump(config, f)
        return path

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp, name)

    @staticmethod
    def aes():
        return ["--set", 'checkpoint.encryption="aes-256-gcm"']

    @classmethod
    def train_in(cls, root, *args, env=None, ranks=0, config=None, every=2, **kwargs):
        """qj-train with checkpoints in root (every 2 steps unless told) and more arguments."""
        command = [tool("qj-train"), "--config", config or cls.config]
        if root is not None:
            command += ["--set", "checkpoint.dir=" + json.dumps(root),
                        "--set", "checkpoint.every=%d" % every]
        command += list(args)
        if ranks:
            command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
        return subprocess.run(command, capture_output=True, text=True, env=env or base_env(),
                              timeout=120, **kwargs)

    def copy(self, source, name):
        target = self.path(name)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        return target

    def edit_manifest(self, step, change):
        """Applies change(manifest) and stores the result with a recomputed
        manifest_sha256, so that only the other checks can notice."""
        m = manifest(step)
        self.assertEqual(manifest_hash(m), m["manifest_sha256"],
                         msg="the test's rendering must reproduce the stored manifest hash")
        change(m)
        m["manifest_sha256"] = manifest_hash(m)
        with open(os.path.join(step, "manifest.json"), "w") as f:
            json.dump(m, f, indent=1)

    def assert_tensors_equal(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for name in want:
            self.assertTrue(np.array_equal(got[name], want[name]), msg=name)

    def assert_no_temp_dirs(self, root):
        self.assertEqual([d for d in os.listdir(root) if d.startswith(".tmp_")], [], msg=root)

    def assert_resumed_from(self, result, step, root):
        self.assertIn("resumed from %s: step %d" % (step_dir(root, step), step),
                      result.stdout + result.stderr)

    def warnings_about(self, result, step):
        return [l for l in (result.stdout + result.stderr).splitlines()
                if "cannot resume from" in l and os.path.basename(step) in l]

    def assert_falls_back(self, root, *needles, env=None):
        """A run to step 8 warns about step 6 (naming one of the needles), resumes
        from step 4 and finishes."""
        result = self.train_in(root, "--set", "train.steps=8", *(self.aes() if env else []), env=env)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, msg=output)
        warnings = self.warnings_about(result, step_dir(root, 6))
        self.assertEqual(len(warnings), 1, msg=output)
        self.assertTrue(any(n in warnings[0] for n in needles), msg=warnings[0])
        self.assertNotIn("resumed from " + step_dir(root, 6), output)
        self.assert_resumed_from(result, 4, root)
        return warnings[0]

    # 1. Kills during a save.

    def test_kill_at_any_save_phase_resumes_from_last_committed_checkpoint_bit_exactly(self):
        for phase in PHASES:
            with self.subTest(phase=phase):
                root = self.path("kill_" + phase)
                shutil.rmtree(root, ignore_errors=True)
                killed = self.train_in(root, env=base_env(QJ_CHECKPOINT_FAULT=phase + "@4"))
                self.assertEqual(killed.returncode, -9, msg=killed.stdout + killed.stderr)
                self.assertIn("killed at %s of the save of step 4" % phase, killed.stderr)
                with open(os.path.join(root, "latest")) as f:
                    self.assertEqual(f.read().strip(), "step_000000002")
                committed = 4 if phase == "after_rename" else 2
                self.assertEqual(os.path.isdir(step_dir(root, 4)), committed == 4)
                if committed == 2:
                    self.assertTrue(any(d.startswith(".tmp_") for d in os.listdir(root)))

                restarted = self.train_in(root)
                self.assertEqual(restarted.returncode, 0, msg=restarted.stdout + restarted.stderr)
                self.assert_resumed_from(restarted, committed, root)
                self.assertNotIn("cannot resume", restarted.stdout + restarted.stderr)
                self.assert_no_temp_dirs(root)
                self.assert_tensors_equal(read_tensors(step_dir(root, 6)), self.reference_tensors[6])
                self.assertEqual(manifest(step_dir(root, 6))["consumed_samples"],
                                 manifest(step_dir(self.reference, 6))["consumed_samples"])

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_kill_of_one_rank_mid_shard_under_mpirun_resumes_bit_exactly(self):
        tp2 = ["--set", "parallel.tp=2"]
        reference = self.path("mpi_reference")
        result = self.train_in(reference, *tp2, ranks=2)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)

        root = self.path("mpi_kill")
        killed = self.train_in(root, *tp2, ranks=2,
                               env=base_env(QJ_CHECKPOINT_FAULT="mid_shard@4", QJ_CHECKPOINT_FAULT_RANK="1"))
        self.assertNotEqual(killed.returncode, 0, msg=killed.stdout + killed.stderr)
        self.assertIn("rank 1 killed at mid_shard of the save of step 4", killed.stdout + killed.stderr)
        self.assertFalse(os.path.exists(step_dir(root, 4)))
        self.assertTrue(any(d.startswith(".tmp_") for d in os.listdir(root)))

        restarted = self.train_in(root, *tp2, ranks=2)
        self.assertEqual(restarted.returncode, 0, msg=restarted.stdout + restarted.stderr)
        self.assert_resumed_from(restarted, 2, root)
        self.assert_no_temp_dirs(root)
        self.assert_tensors_equal(read_tensors(step_dir(root, 6)), read_tensors(step_dir(reference, 6)))

    # 2. Damage, and falling back to an older checkpoint.

    def test_damaged_newest_checkpoint_is_named_and_the_previous_one_resumed(self):
        def chunk_of(step, name):
            return manifest(step)["tensors"][name]["chunks"][0]

        def flip_in_chunk(step):
            c = chunk_of(step, "h.0.mlp.c_fc.weight")
            flip_byte(os.path.join(step, c["file"]), c["offset"] + c["length"] // 2)

        def flip_manifest(step):
            path = os.path.join(step, "manifest.json")
            with open(path, "rb") as f:
                text = f.read()
            # A digit of the step number: still valid JSON, different content.
            flip_byte(path, text.index(b'"step": 6') + len(b'"step": '))

        def truncate_shard(step):
            shard = os.path.join(step, "rank_00000.bin")
            os.truncate(shard, os.path.getsize(shard) // 2)

        damages = {
            "flipped byte in a chunk": (flip_in_chunk, ["rank_00000.bin"], ["SHA-256"]),
            "flipped byte of manifest.json": (flip_manifest, ["manifest.json"], ["manifest"]),
            "truncated shard": (truncate_shard, ["rank_00000.bin"], ["truncated"]),
            "deleted shard": (lambda s: os.remove(os.path.join(s, "rank_00000.bin")),
                              ["rank_00000.bin"], []),
            "deleted manifest.json": (lambda s: os.remove(os.path.join(s, "manifest.json")),
                                      ["manifest.json"], []),
        }
        for i, (what, (damage, files, words)) in enumerate(damages.items()):
            with self.subTest(damage=what):
                root = self.copy(self.reference, "damaged_%d" % i)
                damage(step_dir(root, 6))
                warning = self.assert_falls_back(root, *files)
                for word in words:
                    self.assertIn(word, warning)

    def test_garbage_in_latest_does_not_change_which_checkpoint_resumes(self):
        root = self.copy(self.reference, "garbage_latest")
        with open(os.path.join(root, "latest"), "wb") as f:
            f.write(b"step_000000002/../../\x00\xff garbage\n")
        result = self.train_in(root, "--set", "train.steps=8")
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        self.assert_resumed_from(result, 6, root)
        self.assertNotIn("cannot resume", result.stdout + result.stderr)

    # 3. Encryption.

    def interrupted_and_resumed(self, name, *args, env=None):
        """Metrics of the steps after a restart from a save killed before its rename."""
        root = self.path(name)
        env = env or base_env()
        killed = self.train_in(root, *args, env=dict(env, QJ_CHECKPOINT_FAULT="before_rename@4"))
        self.assertEqual(killed.returncode, -9, msg=killed.stdout + killed.stderr)
        log = self.path(name + ".jsonl")
        result = self.train_in(root, *args, "--metrics-jsonl", log, env=env)
        self.assertEqual(result.returncode, 0, msg=result.stdout + result.stderr)
        self.assert_resumed_from(result, 2, root)
        return root, result, metrics(log)

    def test_encrypted_resume_continues_exactly_like_unencrypted(self):
        _, _, plain = self.interrupted_and_resumed("resume_plain")
        self.assertEqual([m[0] for m in plain], [3, 4, 5, 6])
        self.assertEqual(plain, metrics(self.reference_metrics)[2:])

        root, result, with_env = self.interrupted_and_resumed(
            "resume_aes_env", *self.aes(), env=base_env(QJ_CHECKPOINT_KEY=KEY))
        self.assertIn("aes-256-gcm)", [l for l in result.stdout.splitlines() if "resumed from" in l][0])
        self.assertEqual(manifest(step_dir(root, 6))["encryption"]["cipher"], "aes-256-gcm")
        self.assertEqual(with_env, plain)

        key_file = self.path("checkpoint.key")
        with open(key_file, "w") as f:
            f.write(KEY + "\n")
        root, _, with_file = self.interrupted_and_resumed(
            "resume_aes_file", *self.aes(), "--set", "checkpoint.key_file=" + json.dumps(key_file))
        self.assertEqual(manifest(step_dir(root, 6))["encryption"]["cipher"], "aes-256-gcm")
        self.assertEqual(with_file, plain)

    def test_wrong_key_is_refused(self):
        root = self.copy(self.encrypted, "wrong_key")
        result = self.train_in(root, "--set", "train.steps=8", *self.aes(),
                               env=base_env(QJ_CHECKPOINT_KEY=OTHER_KEY))
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 2, msg=output)
        self.assertIn("wrong key", output)
        self.assertNotIn("resumed from", output)
        self.assertNotIn("core dumped", output)

    def test_tampered_encrypted_checkpoint_is_detected_and_never_loaded(self):
        env = base_env(QJ_CHECKPOINT_KEY=KEY)
        a, b = "h.0.mlp.c_fc.weight", "h.0.mlp.c_proj.weight"

        def chunks(m):
            return m["tensors"][a]["chunks"][0], m["tensors"][b]["chunks"][0]

        def flip_ciphertext(step):
            c = manifest(step)["tensors"][a]["chunks"][0]
            flip_byte(os.path.join(step, c["file"]), c["offset"] + 7)

        def flip_ciphertext_and_rehash(step):
            # Every hash made to agree: only the AEAD tag can notice.
            c = manifest(step)["tensors"][a]["chunks"][0]
            shard = os.path.join(step, c["file"])
            flip_byte(shard, c["offset"] + 7)
            with open(shard, "rb") as f:
                f.seek(c["offset"])
                digest = hashlib.sha256(f.read(c["length"])).hexdigest()
            self.edit_manifest(step, lambda m: m["tensors"][a]["chunks"][0].update(sha256=digest))

        def swap_offsets(step):
            path = os.path.join(step, "manifest.json")
            m = manifest(step)
            x, y = chunks(m)
            self.assertEqual(x["length"], y["length"])
            x["offset"], y["offset"] = y["offset"], x["offset"]
            with open(path, "w") as f:
                json.dump(m, f, indent=1)  # manifest_sha256 left as it was

        def swap_chunks_and_rehash(step):
            x, y = chunks(manifest(step))
            self.assertEqual(x["file"], y["file"])
            self.assertEqual(x["length"], y["length"])
            shard = os.path.join(step, x["file"])
            with open(shard, "r+b") as f:
                f.seek(x["offset"])
                bytes_x = f.read(x["length"])
                f.seek(y["offset"])
                bytes_y = f.read(y["length"])
                f.seek(x["offset"])
                f.write(bytes_y)
                f.seek(y["offset"])
                f.write(bytes_x)

            def swap_hashes(m):
                cx, cy = chunks(m)
                cx["sha256"], cy["sha256"] = cy["sha256"], cx["sha256"]
            self.edit_manifest(step, swap_hashes)

        def truncate_tail(step):
            shard = os.path.join(step, "rank_00000.bin")
            os.truncate(shard, os.path.getsize(shard) - 100)

        tamperings = {
            "flipped ciphertext bit": (flip_ciphertext, ["SHA-256", "authentication"]),
            "flipped ciphertext bit, hashes recomputed": (flip_ciphertext_and_rehash, ["authentication"]),
            "chunk offsets swapped in the manifest": (swap_offsets, ["manifest"]),
            "equal chunks swapped, hashes recomputed": (swap_chunks_and_rehash, ["authentication"]),
            "truncated shard tail": (truncate_tail, ["truncated"]),
        }
        for i, (what, (tamper, needles)) in enumerate(tamperings.items()):
            with self.subTest(tampering=what):
                root = self.copy(self.encrypted, "tampered_%d" % i)
                tamper(step_dir(root, 6))
                self.assert_falls_back(root, *needles, env=env)

    def test_encrypted_checkpoint_holds_no_plaintext_of_any_tensor(self):
        def files_under(root):
            for where, _, names in os.walk(root):
                for name in names:
                    with open(os.path.join(where, name), "rb") as f:
                        yield f.read()

        needles = set()
        for tensors in self.reference_tensors.values():
            for name, values in tensors.items():
                head = values.astype("<f4").tobytes()[:64]
                if len(head) == 64 and len(set(values.ravel()[:16].tolist())) > 1:
                    needles.add(head)
        self.assertIn(self.reference_tensors[6]["wte.weight"].astype("<f4").tobytes()[:64], needles)
        self.assertGreater(len(needles), 50)
        plain = list(files_under(self.reference))
        encrypted = list(files_under(self.encrypted))
        # The encrypted run saved the same values: the unencrypted one shows them.
        self.assertTrue(all(any(n in data for data in plain) for n in needles))
        found = [n for n in needles if any(n in data for data in encrypted)]
        self.assertEqual(found, [])

    def test_sm4_gcm_fails_at_start_naming_openssl_3_2(self):
        root = self.path("sm4")
        result = self.train_in(root, "--set", 'checkpoint.encryption="sm4-gcm"',
                               env=base_env(QJ_CHECKPOINT_KEY="00" * 16))
        self.assertEqual(result.returncode, 2, msg=result.stdout + result.stderr)
        errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        self.assertEqual(len(errors), 1, msg=result.stderr)
        self.assertIn("3.2", errors[0])
        self.assertIn("sm4", errors[0].lower())
        self.assertNotIn("step 1/", result.stdout)

    # 4. Bad input.

    def assert_exit_2(self, result, *needles):
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 2, msg=output)
        self.assertTrue(any(l.startswith("error:") for l in result.stderr.splitlines()), msg=output)
        for needle in needles:
            self.assertIn(needle, output)
        self.assertNotIn("resumed from", output)
        self.assertNotIn("core dumped", output)
        return output

    def test_checkpoint_of_another_model_shape_is_refused_naming_a_tensor(self):
        root = self.path("hidden32")
        made = self.train_in(root, config=self.config32, every=0)
        self.assertEqual(made.returncode, 0, msg=made.stdout + made.stderr)
        result = self.train_in(None, "--set", "checkpoint.resume=" + json.dumps(step_dir(root, 6)))
        output = self.assert_exit_2(result)
        names = manifest(step_dir(root, 6))["tensors"]
        self.assertTrue(any("'%s'" % name in output or " %s " % name in output for name in names),
                        msg=output)

    def test_newer_format_version_is_refused_naming_both_versions(self):
        root = self.copy(self.reference, "format_2")
        self.edit_manifest(step_dir(root, 6), lambda m: m.update(format_version="2.0"))
        result = self.train_in(None, "--set", "checkpoint.resume=" + json.dumps(step_dir(root, 6)))
        output = self.assert_exit_2(result, "2.0", "1.")
        self.assertIn("newer", output)

    def test_nonexistent_resume_path_is_refused(self):
        result = self.train_in(None, "--set", 'checkpoint.resume="/nonexistent"')
        self.assert_exit_2(result, "/nonexistent")

    @unittest.skipIf(os.geteuid() == 0, "root ignores permissions")
    def test_unreadable_checkpoint_directory_is_refused(self):
        root = self.copy(self.reference, "unreadable")
        step = step_dir(root, 6)
        os.chmod(step, 0)
        try:
            result = self.train_in(None, "--set", "checkpoint.resume=" + json.dumps(step))
            self.assert_exit_2(result, "step_000000006")
        finally:
            os.chmod(step, 0o755)

    def test_file_size_limit_during_save_fails_cleanly_and_keeps_the_previous_checkpoint(self):
        shard = os.path.join(step_dir(self.reference, 2), "rank_00000.bin")
        manifest_file = os.path.join(step_dir(self.reference, 2), "manifest.json")
        self.assertLess(os.path.getsize(manifest_file), FILE_SIZE_LIMIT)
        self.assertGreater(os.path.getsize(shard), FILE_SIZE_LIMIT)

        root = self.path("file_size_limit")
        made = self.train_in(root, "--set", "train.steps=2")
        self.assertEqual(made.returncode, 0, msg=made.stdout + made.stderr)
        before = read_tensors(step_dir(root, 2))
        self.assert_tensors_equal(before, self.reference_tensors[2])

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

        result = self.train_in(root, "--set", "train.steps=4", preexec_fn=limit)
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, msg=output)
        self.assertGreater(result.returncode, 0, msg="killed by a signal, not an error: " + output)
        self.assert_resumed_from(result, 2, root)
        self.assertTrue(any(w in output for w in ("RLIMIT_FSIZE", "file size limit", "disk full")),
                        msg=output)
        self.assertFalse(os.path.exists(step_dir(root, 4)))
        with open(os.path.join(root, "latest")) as f:
            self.assertEqual(f.read().strip(), "step_000000002")
        self.assert_tensors_equal(read_tensors(step_dir(root, 2)), before)


if __name__ == "__main__":
    unittest.main()
