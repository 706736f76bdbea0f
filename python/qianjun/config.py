"""Training configs (the JSON files of configs/) and their memory plans."""
import json
import os

from ._native import core as _core
from .errors import ConfigError

_DICT_SOURCE = "<dict>"


class Config:
    """A validated training config: what ``qj-train --config FILE --set ...`` reads.

    ``Config.load(path)`` reads a JSON file, ``Config({...})`` takes the same
    structure as a dict (``{"train": {"steps": 10}}``); every key has a default.
    ``cfg["section.key"] = value`` overrides one key exactly as ``--set
    section.key=value`` does, with the same checks: an unknown key or a wrong
    type or value raises :class:`ConfigError` with qj-train's message and leaves
    the config unchanged. ``cfg.update({...})`` sets several keys, checked
    together. ``cfg["section.key"]`` reads a value, ``to_dict()`` gives every
    key after presets (what the run uses).
    """

    def __init__(self, values=None):
        """A config from a dict of sections (None: every default)."""
        if values is None:
            values = {}
        if isinstance(values, Config):
            self._text, self._source, self._overrides = values._text, values._source, list(values._overrides)
            self._native = values._native
            return
        if not isinstance(values, dict):
            raise TypeError("Config() takes a dict of sections, e.g. {'train': {'steps': 10}}; got "
                            + type(values).__name__ + " (use Config.load(path) for a file)")
        try:
            text = json.dumps(values)
        except (TypeError, ValueError) as e:
            raise ConfigError("config: the dict is not JSON data: " + str(e)) from None
        self._init(text, _DICT_SOURCE, [])

    def _init(self, text, source, overrides):
        self._native = _core.parse_config(text, overrides, source)
        self._text, self._source, self._overrides = text, source, overrides

    @classmethod
    def load(cls, path, overrides=()):
        """Reads a JSON config file; ``overrides``: "section.key=value" strings, as --set takes."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError("Config.load(path): path must be a str or os.PathLike, got " + type(path).__name__)
        path = os.fspath(path)
        overrides = [_checked_override(o) for o in overrides]
        cfg = cls.__new__(cls)
        cfg._init(_core.read_config_file(path), path, overrides)
        return cfg

    def set(self, override):
        """Applies one "section.key=value" string exactly as ``--set`` does (value: JSON, else text)."""
        overrides = self._overrides + [_checked_override(override)]
        self._init(self._text, self._source, overrides)

    def __setitem__(self, key, value):
        """``cfg["train.lr"] = 3e-4``: the value as JSON (str values stay strings).

        The whole config is validated at once, so the config after each
        assignment must be valid; to change keys that depend on each other
        (``train.steps`` below ``train.warmup_steps``), use :meth:`update`.
        """
        self.update({key: value})

    def update(self, values):
        """Sets several "section.key" values together, validated together (like several --set)."""
        if not isinstance(values, dict):
            raise TypeError("update() takes a dict of 'section.key': value, got " + type(values).__name__)
        overrides = list(self._overrides)
        for key, value in values.items():
            if not isinstance(key, str):
                raise TypeError("config keys are 'section.key' strings, got " + type(key).__name__)
            try:
                text = json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise ConfigError("config: the value for '" + key + "' is not JSON data: " + str(e)) from None
            overrides.append(key + "=" + text)
        self._init(self._text, self._source, overrides)

    def __getitem__(self, key):
        """``cfg["train.lr"]``: the value the run uses (after presets and overrides)."""
        section, _, name = key.partition(".")
        values = self.to_dict()
        if section not in values or name not in values[section]:
            raise KeyError(key)
        return values[section][name]

    def to_dict(self):
        """Every key of every section, after presets and overrides (a fresh dict)."""
        return json.loads(self._native.to_json())

    def to_json(self):
        """The config as JSON text, every key (what a checkpoint's manifest records)."""
        return self._native.to_json()

    @property
    def overrides(self):
        """The "section.key=value" overrides applied so far, in order."""
        return list(self._overrides)

    def __repr__(self):
        return "Config(source={!r}, overrides={!r})".format(self._source, self._overrides)


def _checked_override(text):
    if not isinstance(text, str):
        raise TypeError("an override is a 'section.key=value' string, got " + type(text).__name__)
    return text


def _as_config(cfg):
    """A Config from a Config, a dict or a path."""
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, dict):
        return Config(cfg)
    if isinstance(cfg, (str, os.PathLike)):
        return Config.load(cfg)
    raise TypeError("expected a qianjun.Config (or a dict, or a config file's path), got " + type(cfg).__name__)


def plan(cfg, world=None):
    """The memory plan of every pipeline stage, as data: what ``qj-plan`` prints.

    ``world``: the number of ranks (default: tp x pp x dp, dp 0 counting as 1).
    Returns a dict: ``parameters``, ``world``, ``tp``, ``pp``, ``dp``,
    ``micro_batch``, ``seq_len``, ``stages`` (one dict per pipeline stage: its
    first ``rank``, ``total_bytes``, bytes per arena in ``arenas``, the printed
    ``report``), ``largest_stage`` and ``bytes_per_rank`` (that stage's total).
    Nothing is allocated. A layout that does not fit raises :class:`ConfigError`.
    """
    cfg = _as_config(cfg)
    if world is None:
        world = 0
    if isinstance(world, bool) or not isinstance(world, int):
        raise TypeError("plan(world=): an int number of ranks, got " + type(world).__name__)
    return _core.plan(cfg._native, world)
