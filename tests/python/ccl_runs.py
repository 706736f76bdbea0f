"""What the collective plugin tests (test_ccl_plugin.py, test_device_ccl_plugin.py)
share: a tiny GPT-2 config on a synthetic corpus, mpirun, and the per-step
losses of a metrics file."""
import json
import os
import shutil
import subprocess

from qj_paths import BUILD_DIR, tool

MPIRUN = shutil.which("mpirun")
ENV = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")


def test_ccl(mode):
    """A broken collective plugin of tests/plugin/test_ccl_plugins.c."""
    return os.path.join(BUILD_DIR, "libqj_test_ccl_%s.so" % mode)


def write_tiny_config(folder):
    """A 2-layer GPT-2 (vocab 97, 4 steps) on a corpus made in `folder`; returns the config path."""
    corpus = os.path.join(folder, "corpus")
    made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "97",
                           "--train-tokens", "20000", "--valid-tokens", "2000"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    config = {"model": {"preset": "gpt2", "layers": 2, "hidden": 64, "heads": 4, "vocab": 97,
                        "seq_len": 32},
              "train": {"steps": 4, "global_batch": 8, "micro_batch": 2, "warmup_steps": 1,
                        "eval_every": 2, "eval_batches": 2},
              "data": {"train": os.path.join(corpus, "train"),
                       "valid": os.path.join(corpus, "valid")},
              "backend": {"threads": 1}}
    path = os.path.join(folder, "tiny.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def mpirun(ranks, command, timeout=300, env=ENV):
    full = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
    return subprocess.run(full, capture_output=True, text=True, env=env, timeout=timeout)


def losses(jsonl):
    """(step, loss, grad norm, validation loss) of every record of a metrics file."""
    with open(jsonl) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r.get("step"), r.get("loss"), r.get("grad_norm"), r.get("valid_loss")) for r in rows]
