"""Loads the extension module qianjun._core and prepares the process for it.

The module is built into ``build/python/qianjun/`` (CMake); that folder joins
this package's path when it is on ``sys.path`` (``PYTHONPATH=python:build/python``)
or, failing that, when it is the ``build/`` beside these sources.
"""
import atexit
import os
import pkgutil
import sys

_package = sys.modules[__package__]
_package.__path__ = pkgutil.extend_path(_package.__path__, __package__)
_beside = os.path.join(os.path.dirname(__file__), "..", "..", "build", "python", "qianjun")
if os.path.isdir(_beside) and os.path.realpath(_beside) not in map(os.path.realpath, _package.__path__):
    _package.__path__.append(_beside)


def _module_dir():
    for folder in _package.__path__:
        if os.path.isdir(folder) and any(name.startswith("_core.") and name.endswith(".so") for name in os.listdir(folder)):
            return folder
    raise ImportError(
        "qianjun: the extension module qianjun._core is not built; build the repository "
        "(bash scripts/setup.sh) and put build/python on PYTHONPATH beside python/ "
        "(PYTHONPATH=python:build/python); folders searched: " + ", ".join(_package.__path__))


# The CPU backend caches its measured peak FLOP/s beside the program; the
# program here is the interpreter, so the cache is the build's own, the one
# qj-train uses (build/cpu_peak_flops.json): the same MFU for the same run.
_build_dir = os.path.normpath(os.path.join(os.path.abspath(_module_dir()), "..", ".."))
os.environ.setdefault("QJ_PEAK_FLOPS_CACHE", os.path.join(_build_dir, "cpu_peak_flops.json"))

# Open MPI opens its plugins with dlopen and they need libmpi's symbols: load
# the module (and libmpi with it) with global symbols, as mpi4py does.
_flags = sys.getdlopenflags()
sys.setdlopenflags(_flags | os.RTLD_GLOBAL)
try:
    from . import _core as core  # noqa: E402
finally:
    sys.setdlopenflags(_flags)


def _shutdown():
    # A rank that ends on an uncaught exception leaves the others waiting in a
    # collective: on a multi-rank run that ends every rank (exit code 1).
    uncaught = getattr(sys, "last_exc", getattr(sys, "last_value", None)) is not None
    core._shutdown(1 if uncaught else 0)


atexit.register(_shutdown)
