#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/corpus/<target>/: small valid files of
each format (and a few near misses), deterministic, a few KB at most. Crash
reproducers saved next to them (crash-*, named by what they found) are left
alone.   usage: tests/fuzz/make_seeds.py"""
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def config_seeds():
    with open(os.path.join(HERE, "..", "..", "configs", "synthetic.json"), "rb") as f:
        synthetic = f.read()
    write("config", "synthetic.json", synthetic)
    write("config", "empty.json", "{}")
    llama = {"model": {"preset": "llama", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2,
                       "vocab": 1000, "seq_len": 32},
             "parallel": {"tp": 2, "pp": 2, "schedule": "interleaved", "virtual_stages": 1},
             "train": {"steps": 10, "global_batch": 8, "micro_batch": 2, "seed": 7,
                       "precision": "bf16"},
             "checkpoint": {"dir": "ckpt", "every": 5, "encryption": "aes-256-gcm"},
             "tokenizer": {"encoder": "e.json", "vocab": "v.bpe"}}
    write("config", "llama.json", json.dumps(llama, indent=1))
    write("config", "overrides.json",
          b'{"model": {"layers": 2}}\0train.lr=3e-4\0model.hidden=128\0data.train=data/x'
          b'\0parallel.sequence_parallel=true')


def safetensors_file(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] in data order."""
    header, offset, data = {}, 0, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    write("safetensors", "three_tensors.safetensors", safetensors_file([
        ("bias", "BF16", [4], struct.pack("<4H", 0x3f80, 0xbf80, 0x0000, 0x7f80)),
        ("weight", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, -6)),
        ("steps", "I64", [1], struct.pack("<q", 42)),
        ("half", "F16", [2], struct.pack("<2H", 0x3c00, 0x0001)),
        ("double", "F64", [1], struct.pack("<d", 0.5)),
    ], {"format": "pt"}))
    write("safetensors", "empty_tensor.safetensors", safetensors_file([("e", "F32", [0, 5], b"")]))
    write("safetensors", "header_only.safetensors", safetensors_file([]))


def manifest_text(manifest):
    """manifest_to_json's rule: the hash of the compact, key-sorted dump of the rest."""
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    manifest = dict(manifest, manifest_sha256=hashlib.sha256(body.encode()).hexdigest())
    return json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def manifest_seeds():
    chunk = lambda offset, rows, row0: {
        "file": "rank0.bin", "offset": offset, "length": rows * 3 * 4, "global_offset": [row0, 0],
        "shape": [rows, 3], "sha256": "00" * 32}
    manifest = {
        "format": "qianjun-checkpoint", "format_version": "1.0", "id": "0123456789abcdef",
        "step": 5, "consumed_samples": 40,
        "optimizer": {"name": "adamw", "steps": 5}, "rng": {"seed": 1234, "data_shuffle": True},
        "model": {"preset": "gpt2", "layers": 1, "hidden": 4, "heads": 2},
        "mesh": {"tp": 1, "pp": 1, "dp": 1, "virtual_stages": 1, "zero": 0,
                 "sequence_parallel": False, "schedule": "1f1b", "precision": "fp32"},
        "encryption": {"cipher": "none"},
        "files": {"rank0.bin": 64},
        "tensors": {
            "w": {"dtype": "F32", "shape": [4, 3], "chunks": [chunk(0, 2, 0), chunk(24, 2, 2)]},
            "b": {"dtype": "F32", "shape": [4], "chunks": [
                {"file": "rank0.bin", "offset": 48, "length": 16, "global_offset": [0],
                 "shape": [4], "sha256": "11" * 32}]},
        },
    }
    write("manifest", "plain.json", manifest_text(manifest))
    sealed = json.loads(json.dumps(manifest))
    sealed["encryption"] = {"cipher": "aes-256-gcm",
                            "key_check": {"iv": "ab" * 12, "tag": "cd" * 16}}
    for t in sealed["tensors"].values():
        for c in t["chunks"]:
            c["seal"] = {"iv": "01" * 12, "tag": "02" * 16}
    write("manifest", "encrypted.json", manifest_text(sealed))


def indexed_dataset_input(dtype_code, sequences, documents):
    item = 2 if dtype_code == 8 else 4
    fmt = "<%dH" if item == 2 else "<%di"
    bin_data, pointers = b"", []
    for tokens in sequences:
        pointers.append(len(bin_data))
        bin_data += struct.pack(fmt % len(tokens), *tokens)
    idx = b"MMIDIDX\0\0" + struct.pack("<QBQQ", 1, dtype_code, len(sequences), len(documents))
    idx += struct.pack("<%di" % len(sequences), *[len(s) for s in sequences])
    idx += struct.pack("<%dq" % len(sequences), *pointers)
    idx += struct.pack("<%dq" % len(documents), *documents)
    return struct.pack("<I", len(bin_data)) + bin_data + idx


def indexed_dataset_seeds():
    write("indexed_dataset", "uint16.input",
          indexed_dataset_input(8, [[1, 2, 3], [50256], [], [7, 8]], [0, 2, 4]))
    write("indexed_dataset", "int32.input",
          indexed_dataset_input(4, [[70000, 1], [2, 3, 4]], [0, 1, 2]))
    write("indexed_dataset", "empty.input", indexed_dataset_input(8, [], [0]))


def jsonl_seeds():
    write("jsonl", "documents.jsonl",
          '{"text": "Hello, world."}\n'
          '\n'
          '{"text": "caf\\u00e9 \\ud83d\\ude00 line\\nbreak", "id": 2}\n'
          '  \t\r\n'
          '{"meta": {"a": [1, 2.5, null]}, "text": ""}\n')
    write("jsonl", "malformed.jsonl",
          '{"text": "ok"}\n{"text": 5}\n[1, 2]\n{"no_text": true}\n{"text": "unterminated\n'
          '{"text": "last"}')
    write("jsonl", "crlf.jsonl", '{"text": "a"}\r\n{"text": "b"}\r\n')


def gpt2_encode_seeds():
    write("gpt2_encode", "english.txt",
          "The quick brown fox's jumped; they'll say it's 2024 -- isn't it?\n\n  Done.  ")
    write("gpt2_encode", "unicode.txt", "日本語のテキスト, Ünïcödé, emoji 😀 and \u00a0nbsp\tand tabs")
    write("gpt2_encode", "invalid_utf8.bin", b"ok \xff\xfe bad \xe6\x97 cut \xf0\x9f\x98 end \xc0\xaf")
    write("gpt2_encode", "whitespace.txt", "   \n\n\n\t \r\n  x    y")
    write("gpt2_encode", "endoftext.txt", "a<|endoftext|>b <|endoftext|>")


def gpt2_byte_to_unicode():
    """GPT-2's bytes_to_unicode (the reference encoder's table)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def gpt2_vocab_seeds():
    chars = gpt2_byte_to_unicode()
    token = lambda s: "".join(chars[b] for b in s.encode())
    encoder = {token(chr(b)) if b < 128 else chars[b]: b for b in range(256)}
    merges = [("t", "h"), ("th", "e"), (" ", "the"), ("i", "n"), ("in", "g"), ("e", "r"), (" ", "a")]
    lines = ["#version: 0.2"]
    for left, right in merges:
        lines.append(token(left) + " " + token(right))
        encoder[token(left + right)] = len(encoder)
    encoder["<|endoftext|>"] = len(encoder)
    encoder_text = json.dumps(encoder, ensure_ascii=False)
    write("gpt2_vocab", "small.vocab", encoder_text + "\0" + "\n".join(lines) + "\n")
    # The reference looks merges up by "left,right": a key with two commas.
    comma = dict(encoder)
    comma['",'] = len(comma)
    comma['","'] = len(comma)
    write("gpt2_vocab", "comma_merge.vocab",
          json.dumps(comma, ensure_ascii=False) + '\0#version: 0.2\n" ,\n", "\n')


if __name__ == "__main__":
    config_seeds()
    safetensors_seeds()
    manifest_seeds()
    indexed_dataset_seeds()
    jsonl_seeds()
    gpt2_encode_seeds()
    gpt2_vocab_seeds()
