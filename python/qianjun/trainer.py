"""Training from Python: one Trainer per rank, stepped by the script."""
import os

from ._native import core as _core
from .config import _as_config


def world_rank():
    """This process's rank: from the launcher (mpirun, srun), 0 without one."""
    return _core.world_rank()


def world_size():
    """The number of ranks the launcher started (1 without a launcher)."""
    return _core.world_size()


class Trainer:
    """One rank's trainer: qj-train's training loop, one step per call.

    ``Trainer(cfg)`` plans memory, reads the data and builds this rank's part of
    the model exactly as ``qj-train`` does (under ``mpirun``/``srun`` every rank
    constructs one; rank and world come from the launcher). A config, data file
    or layout problem raises :class:`qianjun.ConfigError` on every rank, with
    qj-train's message, before anything is allocated.

    ``init_from``: a Hugging Face-named safetensors file to start from
    (``--init-from``). ``metrics_jsonl``: a file that receives one JSON line per
    step, as ``--metrics-jsonl`` writes it.

    ``step()`` trains the next step and returns a dict (``step``, ``loss``,
    ``lr``, ``grad_norm``, ``ms``, ``tokens_per_s``, ``mfu``, ``skipped``,
    ``aux_loss`` for a mixture-of-experts model, and ``valid_loss`` when the
    step ended with an evaluation); rank 0 prints
    qj-train's log line. The step that ends the run also saves the final
    checkpoint (with ``checkpoint.dir``), prints the summary and exports
    ``train.export_path``; ``step()`` after that raises :class:`qianjun.Error`.
    ``train()`` yields the remaining steps. Every rank must make the same calls
    in the same order (they are collective). The GIL is released while C++
    works; Ctrl-C finishes the current step, then raises KeyboardInterrupt (on a
    multi-rank run the process should then exit: at exit every rank is ended).
    """

    def __init__(self, cfg, init_from=None, metrics_jsonl=None):
        cfg = _as_config(cfg)
        if init_from is not None:
            init_from = _path("init_from", init_from)
        metrics_jsonl = "" if metrics_jsonl is None else _path("metrics_jsonl", metrics_jsonl)
        self._config = cfg
        self._native = _core.Trainer(cfg._native, init_from, metrics_jsonl)

    @property
    def rank(self):
        """This rank in the world (0 without a launcher)."""
        return _core.world_rank()

    @property
    def world_size(self):
        """The number of ranks training together."""
        return _core.world_size()

    @property
    def mesh(self):
        """This rank's coordinates: ``tp``, ``pp`` (pipeline stage), ``dp``, and each axis's size."""
        return self._native.mesh

    @property
    def config(self):
        """The :class:`qianjun.Config` the trainer was built from."""
        return self._config

    @property
    def steps_done(self):
        """Optimizer steps taken, counting those of a checkpoint the run resumed from."""
        return self._native.steps_done

    @property
    def total_steps(self):
        """``train.steps``: where the run ends."""
        return self._native.total_steps

    @property
    def finished(self):
        """True once every step of ``train.steps`` is trained."""
        return self._native.finished

    def step(self):
        """Trains the next step (collective); returns its metrics as a dict (see the class doc)."""
        return self._native.step()

    def train(self):
        """Yields the metrics dict of every remaining step (a generator)."""
        while not self._native.finished:
            yield self._native.step()

    def evaluate(self):
        """The validation loss now (``train.eval_batches`` micro-batches; collective)."""
        return self._native.evaluate()

    def export(self, path):
        """Writes the weights now as a Hugging Face safetensors file (rank 0 writes; collective)."""
        self._native.export(_path("path", path))

    def save_checkpoint(self):
        """Saves a checkpoint of the state now into ``checkpoint.dir`` (collective)."""
        self._native.save_checkpoint()

    def state_dict(self):
        """The weights now as ``{Hugging Face name: numpy float32 array}`` on rank 0.

        Collective: every rank must call it; the other ranks get an empty dict.
        Names, layouts and the (unpadded) vocabulary are those of ``export()``.
        """
        return self._native.state_dict()

    def close(self):
        """Frees the trainer's memory now (every rank together); the object is unusable after."""
        self._native.close()

    def __repr__(self):
        return "Trainer(rank={}, world_size={}, steps_done={}/{})".format(
            self.rank, self.world_size, self.steps_done, self.total_steps)


def _path(name, value):
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(name + " must be a path (str or os.PathLike), got " + type(value).__name__)
    return os.fspath(value)
