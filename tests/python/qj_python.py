"""How the Python-module tests import qianjun and run Python under mpirun.

The package comes from the sources (python/qianjun) and its extension module
from the build under test (QJ_BUILD_DIR/python/qianjun, set by ctest): the
same PYTHONPATH the README gives, python:build/python. Builds without the
module (sanitizer builds, no pybind11) skip these tests.
"""
import os
import shutil
import sys
import unittest

from qj_paths import BUILD_DIR, SOURCE_DIR

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PYTHONPATH = os.pathsep.join([os.path.join(SOURCE_DIR, "python"), os.path.join(BUILD_DIR, "python")])
MODULE_DIR = os.path.join(BUILD_DIR, "python", "qianjun")
HAVE_MODULE = os.path.isdir(MODULE_DIR) and any(n.startswith("_core.") for n in os.listdir(MODULE_DIR))
MPIRUN = shutil.which("mpirun")
# The environment of a Python subprocess (examples, mpirun): a fresh shell's plus PYTHONPATH.
ENV = dict(os.environ, PYTHONPATH=PYTHONPATH, OMPI_MCA_mpi_yield_when_idle="1")


def mpirun(ranks):
    return [MPIRUN, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(ranks)]


def import_qianjun():
    """Imports qianjun from the sources and this build, or skips the test module."""
    if not HAVE_MODULE:
        raise unittest.SkipTest("the Python module is not built in " + BUILD_DIR)
    for folder in reversed(PYTHONPATH.split(os.pathsep)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    import qianjun
    return qianjun


def tiny_config(qj, **overrides):
    """configs/synthetic.json made small: a step takes milliseconds."""
    cfg = qj.Config.load(os.path.join(SOURCE_DIR, "configs", "synthetic.json"))
    values = {"model.layers": 2, "model.hidden": 64, "model.heads": 2, "model.seq_len": 32,
              "train.steps": 4, "train.global_batch": 4, "train.micro_batch": 2,
              "train.warmup_steps": 1, "train.eval_every": 2, "train.eval_batches": 2,
              "data.train": os.path.join(SOURCE_DIR, "data", "synthetic", "train"),
              "data.valid": os.path.join(SOURCE_DIR, "data", "synthetic", "valid")}
    values.update(overrides)
    cfg.update(values)
    return cfg
