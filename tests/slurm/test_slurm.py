#!/usr/bin/python3
"""examples/slurm/train.sbatch on a real single-node Slurm cluster started here
(slurm_cluster.py: munged, slurmctld and slurmd on localhost, a generated
slurm.conf) trains with the same losses as mpirun: `sbatch --wait --ntasks=4`
of the batch script (srun --mpi=pmix, tp 2 x dp 2) against `mpirun -np 4` of
examples/train.py with the same settings, every JSONL record compared (less
timings). Exit 0: equal; 1: a difference or a failure (with the daemons' logs);
77: skipped (slurm-wlm or munge missing, or not root: slurmd needs root).

    /usr/bin/python3 tests/slurm/test_slurm.py        (ctest -L slurm)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from slurm_cluster import SlurmCluster, missing_programs  # noqa: E402

SOURCE_DIR = os.path.abspath(os.environ.get("QJ_SOURCE_DIR", os.path.join(HERE, "..", "..")))
BUILD_DIR = os.path.abspath(os.environ.get("QJ_BUILD_DIR", os.path.join(SOURCE_DIR, "build")))
SETTINGS = ["--config", "configs/synthetic.json", "--set", "parallel.tp=2", "--set", "model.layers=2",
            "--set", "model.seq_len=64", "--set", "train.steps=5", "--set", "train.warmup_steps=1",
            "--set", "train.global_batch=8", "--set", "train.micro_batch=2", "--set", "train.eval_every=5",
            "--set", "train.eval_batches=2"]
RANKS = 4


def records(path):
    with open(path) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in ("ms", "tokens_per_s", "mfu")}
                for line in f]


def main():
    missing = missing_programs()
    if missing or shutil.which("mpirun") is None:
        print("skipped: not installed: " + " ".join(missing or ["mpirun"]) + " (apt-get install slurm-wlm munge)")
        return 77
    if os.geteuid() != 0:
        print("skipped: slurmd runs jobs as their user and needs root")
        return 77
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_MCA_mpi_yield_when_idle="1",
               PYTHONPATH=os.pathsep.join([os.path.join(SOURCE_DIR, "python"), os.path.join(BUILD_DIR, "python")]))
    tmp = tempfile.mkdtemp(prefix="qj_slurm_test_")
    reference, job = os.path.join(tmp, "mpirun.jsonl"), os.path.join(tmp, "slurm.jsonl")
    train = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                            "-np", str(RANKS), "/usr/bin/python3", "examples/train.py"] + SETTINGS
                           + ["--metrics-jsonl", reference], cwd=SOURCE_DIR, env=env, capture_output=True,
                           text=True, timeout=600)
    if train.returncode != 0:
        print("mpirun run failed:\n" + train.stdout + train.stderr)
        return 1
    cluster = SlurmCluster(cpus=RANKS)
    try:
        cluster.start()
        output = os.path.join(tmp, "job.out")
        done = cluster.sbatch_wait(["--ntasks={}".format(RANKS), "--output=" + output,
                                    "examples/slurm/train.sbatch"] + SETTINGS + ["--metrics-jsonl", job],
                                   cwd=SOURCE_DIR)
        with open(output, errors="replace") if os.path.exists(output) else open(os.devnull) as f:
            log = f.read()
        print(log)
        if done.returncode != 0:
            print("sbatch --wait failed ({}):\n{}{}\n{}".format(done.returncode, done.stdout, done.stderr,
                                                                cluster.logs()))
            return 1
        if "mesh: tp=2 pp=1 dp=2 ({} ranks)".format(RANKS) not in log:
            print("the job did not train on {} ranks".format(RANKS))
            return 1
        ours, theirs = records(job), records(reference)
        if len(ours) != 6 or ours != theirs:
            print("records differ:\nslurm:  {}\nmpirun: {}".format(ours, theirs))
            return 1
        print("Slurm job and mpirun agree on {} records (5 steps, 1 evaluation)".format(len(ours)))
        return 0
    except Exception as e:  # a daemon that did not start: say why
        print("error: {}\n{}".format(e, cluster.logs()))
        return 1
    finally:
        cluster.stop()
        cluster.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
