"""Our indexed dataset against an independent numpy implementation of
Megatron-LM's MMIDIDX layout (megatron/core/datasets/indexed_dataset.py):

  .idx: b"MMIDIDX\\x00\\x00", <Q version 1, <B dtype code (4 int32, 8 uint16),
        <Q sequence count n, <Q document count d, int32 sizes[n],
        int64 pointers[n] (byte offsets into .bin), int64 document_indices[d]
  .bin: the tokens of every sequence, back to back.

Files written here with numpy are read by `qj-make-corpus --dump`; files that
qj-make-corpus writes are parsed here and checked byte by byte, and the
synthetic corpus is checked against the entropy it claims.
"""
import json
import math
import os
import struct
import subprocess
import tempfile
import unittest

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
CODES = {np.dtype(np.int32): 4, np.dtype(np.uint16): 8}
DTYPES = {4: np.int32, 8: np.uint16}


def make_corpus_binary():
    build = os.environ.get("QJ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
    return os.path.join(build, "qj-make-corpus")


def write_megatron(prefix, documents, dtype):
    """Megatron's builder: one sequence per document, running byte pointers."""
    dtype = np.dtype(dtype)
    sizes = np.array([len(d) for d in documents], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) * dtype.itemsize)[:-1]]).astype(np.int64)
    document_indices = np.arange(len(documents) + 1, dtype=np.int64)
    with open(prefix + ".idx", "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", CODES[dtype]))
        f.write(struct.pack("<Q", len(sizes)))
        f.write(struct.pack("<Q", len(document_indices)))
        f.write(sizes.tobytes())
        f.write(pointers.tobytes())
        f.write(document_indices.tobytes())
    with open(prefix + ".bin", "wb") as f:
        for d in documents:
            f.write(np.asarray(d, dtype=dtype).tobytes())


def read_megatron(prefix):
    """Parses an index strictly; returns (dtype, sizes, pointers, document_indices, tokens)."""
    with open(prefix + ".idx", "rb") as f:
        raw = f.read()
    assert raw[:9] == MAGIC, "bad magic"
    version, = struct.unpack_from("<Q", raw, 9)
    code, = struct.unpack_from("<B", raw, 17)
    n, d = struct.unpack_from("<QQ", raw, 18)
    assert version == 1
    offset = 34
    sizes = np.frombuffer(raw, dtype=np.int32, count=n, offset=offset)
    pointers = np.frombuffer(raw, dtype=np.int64, count=n, offset=offset + 4 * n)
    document_indices = np.frombuffer(raw, dtype=np.int64, count=d, offset=offset + 12 * n)
    assert len(raw) == offset + 12 * n + 8 * d, "index has the wrong size"
    tokens = np.fromfile(prefix + ".bin", dtype=DTYPES[code])
    return DTYPES[code], sizes, pointers, document_indices, tokens


def dump(prefix, offset=0, count=64):
    result = subprocess.run([make_corpus_binary(), "--dump", prefix, "--offset", str(offset), "--count", str(count)],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout)


def conditional_entropy(contexts, outcomes):
    """Plug-in entropy of outcome given context, in nats (both int64 arrays)."""
    _, joint = np.unique(contexts * (1 << 20) + outcomes, return_counts=True)
    _, marginal = np.unique(contexts, return_counts=True)
    total = len(outcomes)
    return (-(joint * np.log(joint)).sum() + (marginal * np.log(marginal)).sum()) / total


class IndexedFormatTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.path.exists(make_corpus_binary()),
                        "build qj-make-corpus first: " + make_corpus_binary())
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_reader_reads_numpy_written_datasets(self):
        rng = np.random.default_rng(0)
        for dtype, high in ((np.uint16, 65536), (np.int32, 2**31 - 1)):
            documents = [rng.integers(0, high, size=n) for n in (13, 0, 1, 250, 7, 64, 3)]
            prefix = os.path.join(self.tmp.name, np.dtype(dtype).name)
            write_megatron(prefix, documents, dtype)
            stream = np.concatenate(documents)
            info = dump(prefix, 0, 0)
            self.assertEqual(info["num_sequences"], 7)
            self.assertEqual(info["num_documents"], 7)
            self.assertEqual(info["num_tokens"], len(stream))
            self.assertEqual(info["dtype"], np.dtype(dtype).name)
            for offset, count in ((0, len(stream)), (10, 20), (len(stream) - 5, 5), (14, 250)):
                self.assertEqual(dump(prefix, offset, count)["tokens"], stream[offset:offset + count].tolist())

    def test_reader_rejects_a_truncated_bin_naming_it(self):
        prefix = os.path.join(self.tmp.name, "short")
        write_megatron(prefix, [[1, 2, 3], [4, 5]], np.uint16)
        with open(prefix + ".bin", "r+b") as f:
            f.truncate(6)
        result = subprocess.run([make_corpus_binary(), "--dump", prefix], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn(prefix + ".bin", result.stderr)
        self.assertIn("truncated", result.stderr)

    def test_make_corpus_writes_megatron_layout_with_the_claimed_entropy(self):
        out = os.path.join(self.tmp.name, "corpus")
        result = subprocess.run([make_corpus_binary(), "--output", out, "--vocab", "256", "--train-tokens", "300000",
                                 "--valid-tokens", "20000", "--seed", "3"], capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "corpus.json")) as f:
            meta = json.load(f)
        self.assertEqual(json.loads(result.stdout), meta)
        self.assertEqual((meta["vocab"], meta["train_tokens"], meta["valid_tokens"]), (256, 300000, 20000))

        for split, expected_tokens in (("train", 300000), ("valid", 20000)):
            prefix = os.path.join(out, split)
            dtype, sizes, pointers, document_indices, tokens = read_megatron(prefix)
            self.assertIs(dtype, np.uint16)
            self.assertEqual(len(tokens), expected_tokens)
            self.assertEqual(int(sizes.sum()), expected_tokens)
            np.testing.assert_array_equal(pointers, np.concatenate([[0], np.cumsum(sizes.astype(np.int64))[:-1] * 2]))
            np.testing.assert_array_equal(document_indices, np.arange(len(sizes) + 1))
            for offset in (0, 12345 % expected_tokens, expected_tokens - 64):
                self.assertEqual(dump(prefix, offset, 64)["tokens"], tokens[offset:offset + 64].tolist())
            # Every document but the cut last one: min..max content tokens, then 0.
            ends = np.cumsum(sizes)
            self.assertTrue(np.all(tokens[ends[:-1] - 1] == 0))
            self.assertTrue(np.all((sizes[:-1] >= meta["min_document"] + 1) & (sizes[:-1] <= meta["max_document"] + 1)))
            self.assertEqual(int((tokens == 0).sum()), len(sizes) - 1 + int(tokens[-1] == 0))

        # The claimed entropies, recomputed from the parameters in corpus.json.
        p = np.array(meta["probabilities"])
        content_entropy = float(-(p * np.log(p)).sum())
        self.assertAlmostEqual(meta["content_entropy_nats"], content_entropy, places=9)
        lo, hi = meta["min_document"], meta["max_document"]
        mean_length = (lo + hi) / 2
        rate = (math.log(hi - lo + 1) + mean_length * content_entropy) / (mean_length + 1)
        self.assertAlmostEqual(meta["entropy_rate_nats"], rate, places=9)
        self.assertLess(rate, math.log(256) - 3)

        # Measured on the data: a content token given the two before it has the
        # claimed entropy; given only one it has clearly more (order-2 structure).
        _, _, _, _, tokens = read_megatron(os.path.join(out, "train"))
        t = tokens.astype(np.int64)
        a, b, c = t[:-2], t[1:-1], t[2:]
        content = c != 0
        h2 = conditional_entropy((a * 256 + b)[content], c[content])
        h1 = conditional_entropy(b[content], c[content])
        self.assertAlmostEqual(h2, content_entropy, delta=0.03)
        self.assertGreater(h1, content_entropy + 0.15)


if __name__ == "__main__":
    unittest.main()
