"""Where the tests find the build and the sources (set by ctest)."""
import os
import subprocess

SOURCE_DIR = os.environ.get("QJ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("QJ_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))


def tool(name):
    return os.path.join(BUILD_DIR, name)


def run(args, **kwargs):
    """Runs a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(args, capture_output=True, text=True, **kwargs)
