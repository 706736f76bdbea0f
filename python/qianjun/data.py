"""Data: GPT-2's tokenizer, Megatron-LM indexed datasets, and qj-prep."""
import operator
import os

from ._native import core as _core


class Tokenizer:
    """GPT-2's byte-level BPE, as qj-prep tokenizes (the same ids as GPT-2's own encoder).

    ``Tokenizer.gpt2(encoder_json, vocab_bpe)`` reads GPT-2's vocabulary files
    (a file that is missing or not GPT-2's raises :class:`qianjun.Error` naming
    it). ``encode(text)`` gives a list of ids; ``decode(ids)`` the text
    (bytes a partial character leaves invalid become U+FFFD);
    ``decode_bytes(ids)`` the exact bytes.
    """

    def __init__(self, native):
        self._native = native

    @classmethod
    def gpt2(cls, encoder_json, vocab_bpe):
        """Reads encoder.json (token -> id) and vocab.bpe (the merges)."""
        return cls(_core.Tokenizer(_path("encoder_json", encoder_json), _path("vocab_bpe", vocab_bpe)))

    def encode(self, text):
        """The ids of ``text`` (a str); "<|endoftext|>" in it is ordinary text."""
        if not isinstance(text, str):
            raise TypeError("encode() takes a str, got " + type(text).__name__)
        return self._native.encode(text)

    def decode_bytes(self, ids):
        """The bytes the ids stand for (ids outside the vocabulary raise :class:`qianjun.Error`)."""
        return self._native.decode_bytes(_ids(ids))

    def decode(self, ids):
        """The text the ids stand for."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    @property
    def vocab_size(self):
        """The number of tokens (50,257 for GPT-2)."""
        return self._native.vocab_size

    @property
    def end_of_text(self):
        """The id of <|endoftext|> (50,256 for GPT-2)."""
        return self._native.end_of_text


class IndexedDataset:
    """A Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx), as the trainer reads it.

    The index is checked when it is opened (:class:`qianjun.Error` naming the
    file). ``len(ds)`` is the number of sequences; ``ds[i]`` sequence ``i`` as a
    read-only numpy array (uint16 or int32) that views the memory-mapped file:
    no copy is made, and the array keeps the dataset open.
    """

    def __init__(self, prefix):
        """Opens PREFIX.idx and PREFIX.bin."""
        self._native = _core.IndexedDataset(_path("prefix", prefix))

    def __len__(self):
        return len(self._native)

    def __getitem__(self, index):
        """Sequence ``index`` (negative counts from the end) as a numpy view."""
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError("IndexedDataset indices are integers, got " + type(index).__name__)
        return self._native[index.__index__()]

    def __iter__(self):
        for i in range(len(self)):
            yield self._native[i]

    @property
    def prefix(self):
        """The path prefix given when opened."""
        return self._native.prefix

    @property
    def num_tokens(self):
        """Tokens of all sequences together."""
        return self._native.num_tokens

    @property
    def num_documents(self):
        """Documents the index records."""
        return self._native.num_documents

    @property
    def dtype(self):
        """The numpy dtype of the stored ids (uint16 below 65,536 tokens of vocabulary, else int32)."""
        return self._native.dtype

    def __repr__(self):
        return "IndexedDataset({!r}: {} sequences, {} tokens)".format(self.prefix, len(self), self.num_tokens)


def prep(inputs, output, threads=2, append_eod=True, jsonl_errors="skip", encoder_json=None, vocab_bpe=None):
    """Tokenizes text into an indexed dataset, as ``qj-prep`` does (same files).

    ``inputs``: a path or a list of paths: text files (one document each),
    ``.jsonl``/``.json`` files (one document per line, its "text" field) or
    folders of them. ``output``: the prefix of PREFIX.bin and PREFIX.idx.
    ``append_eod`` ends each document with <|endoftext|>; ``jsonl_errors``
    ("skip" or "fatal") says what a malformed JSONL line does. The vocabulary
    files default to qj-prep's. Returns a dict of counts (``documents``,
    ``tokens``, ``bytes``, ``seconds``, ``skipped_lines``, ``warnings``, ...).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [_path("inputs", p) for p in inputs]
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError("threads must be an int, got " + type(threads).__name__)
    if not isinstance(jsonl_errors, str):
        raise TypeError("jsonl_errors must be 'skip' or 'fatal'")
    return _core.prep(inputs, _path("output", output), threads, bool(append_eod), jsonl_errors,
                      "" if encoder_json is None else _path("encoder_json", encoder_json),
                      "" if vocab_bpe is None else _path("vocab_bpe", vocab_bpe))


def _ids(ids):
    try:
        return [operator.index(i) for i in ids]
    except TypeError:
        raise TypeError("ids must be a sequence of ints, got " + type(ids).__name__) from None


def _path(name, value):
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(name + " must be a path (str or os.PathLike), got " + type(value).__name__)
    return os.fspath(value)


class Sampler:
    """Continues a prompt with trained weights, as ``qj-sample`` does (same tokens for the same seed).

    ``Sampler(cfg, weights)``: the model of ``cfg``'s model section on its
    backend, with the weights of a Hugging Face-named safetensors file (what
    ``Trainer.export`` writes); weights that do not fit the model raise
    :class:`qianjun.Error` naming the tensor. ``generate(ids, tokens=64,
    temperature=0.8, top_k=40, seed=1234)`` returns the new ids (temperature 0:
    greedy). ``complete(text, tokenizer, ...)`` does the same on text.
    """

    def __init__(self, cfg, weights):
        from .config import _as_config
        self._config = _as_config(cfg)
        self._native = _core.Sampler(self._config._native, _path("weights", weights))

    def generate(self, ids, tokens=64, temperature=0.8, top_k=40, seed=1234, vocab_size=None):
        """``tokens`` new ids after ``ids`` (a non-empty sequence of ints), drawn from the first
        ``vocab_size`` logits (default: the model's vocabulary)."""
        ids = _ids(ids)
        if vocab_size is None:
            vocab_size = self._config["model.vocab"]
        return self._native.generate(ids, tokens, float(temperature), top_k, seed, vocab_size)

    def complete(self, text, tokenizer, tokens=64, temperature=0.8, top_k=40, seed=1234):
        """The continuation of ``text`` as text (an empty prompt starts from <|endoftext|>)."""
        _core.check_vocab_fits(self._config._native, tokenizer.vocab_size)
        ids = tokenizer.encode(text) or [tokenizer.end_of_text]
        return tokenizer.decode(self.generate(ids, tokens, temperature, top_k, seed, tokenizer.vocab_size))
