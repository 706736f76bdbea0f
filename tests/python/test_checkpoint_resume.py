"""Checkpoint resume, end to end through qj-train: a run killed in the middle of
a save and started again ends bit for bit where the uninterrupted run ends (one
process and 8 ranks); a checkpoint saved by one parallel layout loads in any
other exactly (the state saved again in the new layout is the same, bit for
bit); training continued after resharding agrees across layouts to rounding;
changing dp keeps the position in the data; `keep` deletes old checkpoints.

The runs are interrupted with QJ_CHECKPOINT_FAULT (the process is SIGKILLed
when the save of a step reaches a phase), never by running fewer steps: the
learning-rate schedule depends on train.steps. Checkpoints are read with the
independent numpy reader of checkpoint_files.py.

Runs shared between tests (the 8-rank reference run is the source of the
resharding and continuation tests) are made once, on first use."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

from checkpoint_files import manifest, read_tensors
from qj_paths import tool

MPIRUN = shutil.which("mpirun")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("QJ_CHECKPOINT_FAULT")}
ENV.update(OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
LONG = os.environ.get("QJ_LONG_TESTS") == "1"

STEPS = 6
GLOBAL_BATCH = 8
MODELS = {
    "gpt2": {"preset": "gpt2", "layers": 4, "hidden": 64, "heads": 4, "kv_heads": 2,
             "vocab": 97, "vocab_pad_to": 1, "seq_len": 16},
    "llama": {"preset": "llama", "layers": 4, "hidden": 64, "heads": 4, "kv_heads": 2,
              "ffn_hidden": 96, "vocab": 97, "vocab_pad_to": 1, "seq_len": 16},
}
# eps 1e-4 (fp32) and 1e-2 (bf16): see tests/mpi/equivalence_matrix.cpp. Only the
# comparisons across layouts need it; bit-exact resume holds for any eps.
BF16 = ["train.precision=\"bf16\"", "optim.eps=1e-2"]

# Layouts as (ranks, --set overrides); ranks 0 runs without mpirun.
SINGLE = (0, [])
TP2_PP2_DP2_ZERO = (8, ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "optim.zero=1"])
PP2_INTERLEAVED_DP2 = (4, ["parallel.pp=2", "parallel.dp=2", "parallel.schedule=\"interleaved\"",
                           "parallel.virtual_stages=2"])
TARGETS = {
    "1x1x1": SINGLE,
    "tp2_dp2_zero": (4, ["parallel.tp=2", "parallel.dp=2", "optim.zero=1"]),
    "pp4_dp2": (8, ["parallel.pp=4", "parallel.dp=2"]),
    "dp8_zero": (8, ["parallel.dp=8", "optim.zero=1"]),
    "tp2_sequence_parallel": (2, ["parallel.tp=2", "parallel.sequence_parallel=true"]),
}
# What manifest.json's "mesh" must say after a save in each target layout.
TARGET_MESH = {
    "1x1x1": {"tp": 1, "pp": 1, "dp": 1},
    "tp2_dp2_zero": {"tp": 2, "pp": 1, "dp": 2, "zero": 1},
    "pp4_dp2": {"tp": 1, "pp": 4, "dp": 2},
    "dp8_zero": {"tp": 1, "pp": 1, "dp": 8, "zero": 1},
    "tp2_sequence_parallel": {"tp": 2, "pp": 1, "dp": 1, "sequence_parallel": True},
}

_tmp = None
_configs = {}
_runs = {}  # name -> root directory of a finished shared run


def setUpModule():
    global _tmp
    _tmp = tempfile.mkdtemp(prefix="qj_checkpoint_resume_")
    corpus = os.path.join(_tmp, "corpus")
    made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "97",
                           "--train-tokens", "20000", "--valid-tokens", "2000"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    for name, model in MODELS.items():
        config = {"model": model,
                  "train": {"steps": STEPS, "global_batch": GLOBAL_BATCH, "micro_batch": 1,
                            "warmup_steps": 1, "eval_every": 0},
                  "optim": {"eps": 1e-4},
                  "data": {"train": os.path.join(corpus, "train"), "valid": ""},
                  "backend": {"threads": 1}}
        _configs[name] = os.path.join(_tmp, name + ".json")
        with open(_configs[name], "w") as f:
            json.dump(config, f)


def tearDownModule():
    shutil.rmtree(_tmp, ignore_errors=True)


def path(*parts):
    return os.path.join(_tmp, *parts)


def quoted(value):
    return json.dumps(value)


def step_dir(root, step):
    return os.path.join(root, "step_%09d" % step)


def train(layout, sets, model="gpt2", metrics=None, fault=None):
    """Runs qj-train in a layout (ranks, overrides) with extra --set overrides;
    returns the CompletedProcess (never raises on a non-zero exit)."""
    ranks, layout_sets = layout
    command = [tool("qj-train"), "--config", _configs[model]]
    for s in layout_sets + sets:
        command += ["--set", s]
    if metrics:
        command += ["--metrics-jsonl", metrics]
    if ranks:
        command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
    env = dict(ENV)
    if fault:
        env["QJ_CHECKPOINT_FAULT"] = fault
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def records(jsonl):
    with open(jsonl) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_latest(root):
    with open(os.path.join(root, "latest")) as f:
        return f.read().strip()


def relative_error(got, want):
    return float(np.max(np.abs(got.astype(np.float64) - want)) /
                 max(float(np.max(np.abs(want))), 1e-30))


def shared_run(name, layout, sets, model="gpt2", metrics=True):
    """A run made once and shared between tests: its checkpoint root (and
    root + ".jsonl" with its metrics)."""
    if name not in _runs:
        root = path(name)
        result = train(layout, sets + ["checkpoint.dir=" + quoted(root)], model=model,
                       metrics=root + ".jsonl" if metrics else None)
        assert result.returncode == 0, result.stdout + result.stderr
        _runs[name] = root
    return _runs[name]


def reference_8_ranks(model="gpt2"):
    """The uninterrupted tp 2 x pp 2 x dp 2 ZeRO-1 fp32 run: it saves every step
    (keep 6), so it also holds steps 2 and 4 of an every=2 run, and step 3 for
    the continuation test; saving more often must not change the training."""
    return shared_run("ref_tp2_pp2_dp2_zero_" + model, TP2_PP2_DP2_ZERO,
                      ["checkpoint.every=1", "checkpoint.keep=6"], model=model)


def reference_single(model="gpt2"):
    return shared_run("ref_single_" + model, SINGLE, ["checkpoint.every=2"], model=model)


class CheckpointTestCase(unittest.TestCase):
    def assertOk(self, result):
        self.assertEqual(result.returncode, 0, msg=result.stdout[-4000:] + result.stderr[-4000:])

    def assertSameCheckpoint(self, got_dir, want_dir):
        """Every tensor (weights and both Adam moments) bit for bit, and the
        training position, equal."""
        got, want = manifest(got_dir), manifest(want_dir)
        self.assertEqual(got["step"], want["step"])
        self.assertEqual(got["consumed_samples"], want["consumed_samples"])
        self.assertEqual(got["optimizer"]["steps"], want["optimizer"]["steps"])
        got, want = read_tensors(got_dir), read_tensors(want_dir)
        self.assertEqual(sorted(got), sorted(want))
        names = list(want)
        self.assertTrue(any(n.startswith("optimizer.exp_avg.") for n in names), names)
        self.assertTrue(any(n.startswith("optimizer.exp_avg_sq.") for n in names), names)
        self.assertTrue(any(not n.startswith("optimizer.") for n in names), names)
        for name in names:
            self.assertEqual(got[name].shape, want[name].shape, msg=name)
            # Compare the bits: also tells -0 from 0 and equal NaNs apart.
            same = np.array_equal(got[name].view(np.uint32), want[name].view(np.uint32))
            if not same:
                diff = np.max(np.abs(got[name].astype(np.float64) - want[name]))
                self.fail(f"{name}: differs from {want_dir} (max |diff| {diff:g})")

    def assertPositionIs(self, step_directory, step):
        m = manifest(step_directory)
        self.assertEqual(m["step"], step)
        self.assertEqual(m["consumed_samples"], step * GLOBAL_BATCH)
        self.assertEqual(m["optimizer"]["steps"], step)

    def check_bit_exact_resume(self, name, layout, sets, reference=None, model="gpt2"):
        """Kills a run (every=2) when step 4's save is half written, runs the same
        command again and compares with the uninterrupted run `reference` (a
        root whose metrics are in root + ".jsonl"), made here if None."""
        every2 = sets + ["checkpoint.every=2"]
        if reference is None:
            reference = path(name + "_ref")
            self.assertOk(train(layout, every2 + ["checkpoint.dir=" + quoted(reference)],
                                model=model, metrics=reference + ".jsonl"))
        root = path(name + "_resumed")
        jsonl = root + ".jsonl"
        command = every2 + ["checkpoint.dir=" + quoted(root)]
        killed = train(layout, command, model=model, metrics=jsonl, fault="mid_shard@4")
        self.assertNotEqual(killed.returncode, 0, msg="the fault did not stop the run")
        self.assertEqual(read_latest(root), "step_000000002")
        self.assertFalse(os.path.exists(step_dir(root, 4)), "step 4 was committed")
        before = len(records(jsonl))
        self.assertOk(train(layout, command, model=model, metrics=jsonl))
        resumed = records(jsonl)[before:]
        self.assertEqual([r["step"] for r in resumed], [3, 4, 5, 6])
        want = {r["step"]: r for r in records(reference + ".jsonl")}
        self.assertEqual(sorted(want), list(range(1, STEPS + 1)))
        for r in resumed:
            for key in ("loss", "lr", "grad_norm"):
                self.assertEqual(r[key], want[r["step"]][key], msg=f"step {r['step']} {key}")
        self.assertEqual(read_latest(root), "step_000000006")
        self.assertSameCheckpoint(step_dir(root, 6), step_dir(reference, 6))
        self.assertPositionIs(step_dir(root, 6), 6)
        # The checkpoint of step 4, written by the resumed run, is the same too.
        self.assertSameCheckpoint(step_dir(root, 4), step_dir(reference, 4))

    def check_reshard(self, source, target, model="gpt2"):
        """Loads source's step 6 in a target layout (no step runs, the final save
        writes the loaded state in the new layout) and compares bit for bit."""
        ranks, _ = TARGETS[target]
        if ranks and MPIRUN is None:
            self.skipTest("mpirun is not on PATH")
        new = path(os.path.basename(source) + "_to_" + target)
        src = step_dir(source, STEPS)
        result = train(TARGETS[target], ["checkpoint.resume=" + quoted(src),
                                         "checkpoint.dir=" + quoted(new)], model=model)
        self.assertOk(result)
        saved = step_dir(new, STEPS)
        self.assertTrue(os.path.isdir(saved), msg=result.stdout[-2000:])
        mesh = manifest(saved)["mesh"]
        for key, value in TARGET_MESH[target].items():
            self.assertEqual(mesh[key], value, msg=f"mesh.{key} of {saved}")
        self.assertSameCheckpoint(saved, src)


    def check_losses_continue(self, got, reference, steps):
        """Same samples in the same order: the losses of the resumed steps equal
        the uninterrupted run's to rounding (a skipped or repeated sample would
        change them at the 1e-3 level)."""
        self.assertEqual([r["step"] for r in got], steps)
        want = {r["step"]: r["loss"] for r in records(reference + ".jsonl")}
        for r in got:
            error = abs(r["loss"] - want[r["step"]]) / abs(want[r["step"]])
            self.assertLess(error, 1e-5, msg=f"loss of step {r['step']}")


class CheckpointResume(CheckpointTestCase):
    # 1. A run killed in the middle of a save resumes bit for bit (one process).
    def test_single_process_resume_after_kill_is_bit_exact_fp32(self):
        self.check_bit_exact_resume("single_fp32", SINGLE, [], reference=reference_single())

    def test_single_process_resume_after_kill_is_bit_exact_bf16(self):
        self.check_bit_exact_resume("single_bf16", SINGLE, BF16)

    # 2. The same on 8 ranks.
    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_tp2_pp2_dp2_zero_resume_after_kill_is_bit_exact_fp32(self):
        self.check_bit_exact_resume("tp2_pp2_dp2_zero_fp32", TP2_PP2_DP2_ZERO, [],
                                    reference=reference_8_ranks())

    # 3. Resharding: a checkpoint loads in any layout to the same state, exactly.
    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_tp2_pp2_dp2_zero_checkpoint_reshards_bit_exact_to_every_layout(self):
        source = reference_8_ranks()
        for target in TARGETS:
            with self.subTest(target=target):
                self.check_reshard(source, target)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_interleaved_pp2_dp2_checkpoint_reshards_bit_exact_to_every_layout(self):
        source = shared_run("src_pp2_interleaved_dp2_gpt2", PP2_INTERLEAVED_DP2, [], metrics=False)
        for target in TARGETS:
            with self.subTest(target=target):
                self.check_reshard(source, target)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_llama_tp2_pp2_dp2_zero_checkpoint_reshards_bit_exact(self):
        source = reference_8_ranks("llama")
        for target in ("1x1x1", "tp2_dp2_zero"):
            with self.subTest(target=target):
                self.check_reshard(source, target, model="llama")

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_llama_interleaved_pp2_dp2_checkpoint_reshards_bit_exact(self):
        source = shared_run("src_pp2_interleaved_dp2_llama", PP2_INTERLEAVED_DP2, [],
                            model="llama", metrics=False)
        for target in ("1x1x1", "tp2_dp2_zero"):
            with self.subTest(target=target):
                self.check_reshard(source, target, model="llama")

    # 4. Training continued after resharding agrees across layouts.
    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_continuing_after_resharding_agrees_across_layouts(self):
        source = reference_8_ranks()
        start = step_dir(source, 3)
        self.assertPositionIs(start, 3)
        runs = {}
        for target in ("1x1x1", "tp2_dp2_zero"):
            root = path("continue_" + target)
            self.assertOk(train(TARGETS[target], ["checkpoint.resume=" + quoted(start),
                                                  "checkpoint.dir=" + quoted(root)],
                                metrics=root + ".jsonl"))
            steps = records(root + ".jsonl")
            self.assertEqual([r["step"] for r in steps], [4, 5, 6], msg=target)
            self.assertPositionIs(step_dir(root, 6), 6)
            runs[target] = ({r["step"]: r["loss"] for r in steps}, read_tensors(step_dir(root, 6)))
        # The uninterrupted tp 2 x pp 2 x dp 2 run is a third layout of the same steps.
        reference = {r["step"]: r["loss"] for r in records(source + ".jsonl")}
        runs["tp2_pp2_dp2_zero (uninterrupted)"] = (reference, read_tensors(step_dir(source, 6)))
        want_losses, want_tensors = runs["1x1x1"]
        weights = [n for n in want_tensors if not n.startswith("optimizer.")]
        self.assertTrue(weights)
        for layout, (losses, tensors) in runs.items():
            for step in (4, 5, 6):
                error = abs(losses[step] - want_losses[step]) / abs(want_losses[step])
                self.assertLess(error, 1e-5, msg=f"{layout}: loss of step {step}")
            for name in weights:
                self.assertLess(relative_error(tensors[name], want_tensors[name]), 1e-4,
                                msg=f"{layout}: {name}")

    # 5. Changing dp keeps the position in the data.
    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_changing_dp_on_resume_keeps_the_sample_position(self):
        reference = reference_single()
        root = path("dp1_to_dp2")
        self.assertOk(train((2, ["parallel.dp=2"]),
                            ["checkpoint.resume=" + quoted(step_dir(reference, 2)),
                             "checkpoint.dir=" + quoted(root), "checkpoint.every=2"],
                            metrics=root + ".jsonl"))
        for step in (4, 6):
            self.assertPositionIs(step_dir(root, step), step)
            self.assertEqual(manifest(step_dir(root, step))["mesh"]["dp"], 2)
        self.check_losses_continue(records(root + ".jsonl"), reference, [3, 4, 5, 6])

    # 6. keep: only the newest checkpoints stay.
    def test_keep_retains_only_the_newest_checkpoints(self):
        root = path("keep2")
        self.assertOk(train(SINGLE, ["checkpoint.dir=" + quoted(root), "checkpoint.every=1",
                                     "checkpoint.keep=2"]))
        steps = sorted(d for d in os.listdir(root) if d.startswith("step_"))
        self.assertEqual(steps, ["step_000000005", "step_000000006"])
        self.assertEqual(read_latest(root), "step_000000006")
        self.assertPositionIs(step_dir(root, 6), 6)


@unittest.skipUnless(LONG, "set QJ_LONG_TESTS=1 to run the long checkpoint tests")
class LongResumeCheckpoint(CheckpointTestCase):
    """Slower or redundant combinations (ctest label "long")."""

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_tp2_pp2_dp2_zero_resume_after_kill_is_bit_exact_bf16(self):
        self.check_bit_exact_resume("tp2_pp2_dp2_zero_bf16", TP2_PP2_DP2_ZERO, BF16)

    def test_llama_single_process_resume_after_kill_is_bit_exact_fp32(self):
        self.check_bit_exact_resume("llama_single_fp32", SINGLE, [], model="llama")

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_llama_tp2_pp2_dp2_zero_resume_after_kill_is_bit_exact_fp32(self):
        self.check_bit_exact_resume("llama_tp2_pp2_dp2_zero_fp32", TP2_PP2_DP2_ZERO, [],
                                    reference=reference_8_ranks("llama"), model="llama")

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_llama_checkpoints_reshard_bit_exact_to_the_other_layouts(self):
        for source in (reference_8_ranks("llama"),
                       shared_run("src_pp2_interleaved_dp2_llama", PP2_INTERLEAVED_DP2, [],
                                  model="llama", metrics=False)):
            for target in ("pp4_dp2", "dp8_zero", "tp2_sequence_parallel"):
                with self.subTest(source=os.path.basename(source), target=target):
                    self.check_reshard(source, target, model="llama")

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_bf16_checkpoint_reshards_bit_exact(self):
        source = shared_run("src_tp2_pp2_dp2_zero_bf16", TP2_PP2_DP2_ZERO, BF16, metrics=False)
        for target in ("1x1x1", "tp2_dp2_zero"):
            with self.subTest(target=target):
                self.check_reshard(source, target)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_changing_dp_twice_keeps_the_sample_position(self):
        """dp 1 -> dp 2 at step 2, then dp 2 -> dp 4 (ZeRO-1) at step 4."""
        reference = reference_single()
        first = path("long_dp1_to_dp2")
        self.assertOk(train((2, ["parallel.dp=2"]),
                            ["checkpoint.resume=" + quoted(step_dir(reference, 2)),
                             "checkpoint.dir=" + quoted(first), "checkpoint.every=2"]))
        second = path("long_dp2_to_dp4")
        self.assertOk(train((4, ["parallel.dp=4", "optim.zero=1"]),
                            ["checkpoint.resume=" + quoted(step_dir(first, 4)),
                             "checkpoint.dir=" + quoted(second), "checkpoint.every=1"],
                            metrics=second + ".jsonl"))
        for step in (5, 6):
            self.assertPositionIs(step_dir(second, step), step)
        self.check_losses_continue(records(second + ".jsonl"), reference, [5, 6])


if __name__ == "__main__":
    unittest.main()
