"""Qianjun from Python: configs, plans, training, tokenizer and datasets.

A thin layer over the C++ core (the extension module ``qianjun._core``, built by
CMake into ``build/python/qianjun/``): every decision is taken in C++, Python
converts arguments and results. With the repository's set-up done::

    PYTHONPATH=python:build/python /usr/bin/python3 -c 'import qianjun'

    import qianjun as qj
    cfg = qj.Config.load("configs/synthetic.json")
    cfg["train.steps"] = 20                  # the keys and checks of --set
    t = qj.Trainer(cfg)                      # under mpirun: one per rank
    for m in t.train():                      # one dict per step
        print(m["step"], m["loss"])

Errors from C++ arrive as :class:`Error` (configuration errors as
:class:`ConfigError`, also a ``ValueError``) with the message qj-train prints.
"""
from ._native import core as _core
from .config import Config, plan
from .data import IndexedDataset, Sampler, Tokenizer, prep
from .errors import ConfigError, Error
from .trainer import Trainer, world_rank, world_size

__all__ = ["Config", "ConfigError", "Error", "IndexedDataset", "Sampler", "Tokenizer", "Trainer", "plan",
           "prep", "world_rank", "world_size"]
