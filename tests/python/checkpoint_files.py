"""An independent reader of Qianjun checkpoints, written from the format's
description (README "Checkpoints") with numpy and hashlib: the tests compare
what the C++ code wrote against it."""
import hashlib
import json
import os

import numpy as np


def manifest(step_dir):
    with open(os.path.join(step_dir, "manifest.json")) as f:
        return json.load(f)


def read_tensors(step_dir, verify=True):
    """{name: float32 array} of every tensor of an unencrypted checkpoint; checks
    the SHA-256 of every chunk and that the chunks tile each tensor once."""
    m = manifest(step_dir)
    assert m["encryption"]["cipher"] == "none", "encrypted: use qj-ckpt export"
    tensors = {}
    for name, t in m["tensors"].items():
        assert t["dtype"] == "F32", name
        out = np.zeros(t["shape"], dtype=np.float32)
        seen = np.zeros(t["shape"], dtype=np.int32)
        for c in t["chunks"]:
            with open(os.path.join(step_dir, c["file"]), "rb") as f:
                f.seek(c["offset"])
                raw = f.read(c["length"])
            assert len(raw) == c["length"], (name, c)
            if verify:
                assert hashlib.sha256(raw).hexdigest() == c["sha256"], (name, c)
            box = np.frombuffer(raw, dtype="<f4").reshape(c["shape"])
            index = tuple(slice(o, o + s) for o, s in zip(c["global_offset"], c["shape"]))
            out[index] = box
            seen[index] += 1
        assert np.all(seen == 1), f"{name}: chunks do not tile it exactly once"
        tensors[name] = out
    return tensors


def newest(root):
    steps = sorted(d for d in os.listdir(root) if d.startswith("step_"))
    return os.path.join(root, steps[-1])
