"""Where the tests find the build and the sources (set by ctest)."""
import os
import subprocess

SOURCE_DIR = os.environ.get("QJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("QJ_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))


def tool(name):
    return os.path.join(BUILD_DIR, name)


# Instrumented builds (scripts/sanitize.sh) run programs about 3x slower; ctest
# sets this there, and every time limit given to run() grows with it.
TIMEOUT_SCALE = float(os.environ.get("QJ_TIMEOUT_SCALE", "1"))


def run(args, **kwargs):
    """Runs a command, capturing text output; never raises on a non-zero exit."""
    if kwargs.get("timeout") is not None:
        kwargs["timeout"] *= TIMEOUT_SCALE
    return subprocess.run(args, capture_output=True, text=True, **kwargs)
