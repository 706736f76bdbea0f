"""A corpus of bad configurations and command lines. Every one ends the same
way: exit code 2, exactly one line "error: ..." on stderr that names the
offending field, file or flag, no crash, no hang, and nothing written (no
checkpoint directory, no metrics file). One table, one test: a new case is one
line of CASES.

Cases run qj-train alone (no mpirun); layouts that need several ranks go through
qj-plan --world N, which checks the same mesh and batch rules without MPI. The
unreadable config file is skipped when the tests run as root, who reads any file.
Only a program's usage text may follow its error line; stdout stays empty."""
import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from qj_paths import tool

TIME_LIMIT_S = 30
ENV = dict(os.environ, OMP_NUM_THREADS="1")
ENV.pop("QJ_CHECKPOINT_KEY", None)
TINY_MODEL = {"layers": 2, "hidden": 32, "heads": 4, "vocab": 512, "seq_len": 16}
CRASH_SIGNS = ("core dumped", "terminate called", "Traceback", "Segmentation", "Aborted",
               "what():", "AddressSanitizer")

# name: what the case shows; build(ctx) -> the arguments after the program;
# needles: every one must appear in the error line; program: which tool runs.
Case = collections.namedtuple("Case", "name build needles program", defaults=("qj-train",))


class Context:
    """What a case builds its command line from: a fresh input folder, an output
    folder that must stay empty, the tiny corpus and a config that trains."""

    def __init__(self, corpus, inputs, outputs):
        self.train = os.path.join(corpus, "train")
        self.valid = os.path.join(corpus, "valid")
        self.inputs, self.outputs = inputs, outputs

    def path(self, name):
        return os.path.join(self.inputs, name)

    def good(self):
        return {"model": dict(TINY_MODEL),
                "train": {"steps": 2, "global_batch": 2, "micro_batch": 2, "warmup_steps": 1,
                          "eval_every": 0},
                "data": {"train": self.train, "valid": self.valid},
                "checkpoint": {"dir": os.path.join(self.outputs, "ckpt")},
                "backend": {"threads": 1}}

    def write(self, content, name="config.json"):
        """A file holding `content` (text as it is, anything else as JSON)."""
        with open(self.path(name), "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return self.path(name)

    def config(self, edit=None):
        config = self.good()
        if edit:
            edit(config)
        return self.write(config)


# --- shorthands for the table ------------------------------------------------------


def field(section, key, value, *needles):
    """The good config with section.key = value in the file."""
    def build(ctx):
        return ["--config", ctx.config(lambda c: c.setdefault(section, {}).__setitem__(key, value))]
    return Case("%s.%s=%s" % (section, key, json.dumps(value)), build,
                needles or ("%s.%s" % (section, key),))


def edit(name, change, *needles):
    """The good config changed by change(config)."""
    return Case(name, lambda ctx: ["--config", ctx.config(change)], needles)


def sets(overrides, *needles, program="qj-train"):
    """The good config with --set overrides on the command line."""
    def build(ctx):
        args = ["--config", ctx.config()]
        for override in overrides:
            args += ["--set", override]
        return args
    return Case("--set " + " --set ".join(overrides), build, needles, program)


def plan(world, overrides, *needles):
    """qj-plan --world N: a layout checked for N ranks without starting them (None:
    no --world, the ranks the config asks for)."""
    def build(ctx):
        args = ["--config", ctx.config()] + (["--world", str(world)] if world is not None else [])
        for override in overrides:
            args += ["--set", override]
        return args
    name = "qj-plan" + (" --world %s" % world if world is not None else "")
    return Case(" ".join([name] + overrides), build, needles, "qj-plan")


def argv(name, build, *needles, program="qj-train"):
    return Case(name, build, needles, program)


def drop(section, key):
    return lambda c: c[section].pop(key)


def update(section, **values):
    return lambda c: c.setdefault(section, {}).update(values)


def truncated_idx(ctx):
    prefix = ctx.path("short")
    shutil.copy(ctx.train + ".bin", prefix + ".bin")
    with open(ctx.train + ".idx", "rb") as src, open(prefix + ".idx", "wb") as dst:
        dst.write(src.read()[:40])
    return ["--config", ctx.config(update("data", train=prefix))]


def bin_missing(ctx):
    prefix = ctx.path("lonely")
    shutil.copy(ctx.train + ".idx", prefix + ".idx")
    return ["--config", ctx.config(update("data", train=prefix))]


def unreadable_config(ctx):
    path = ctx.write(ctx.good(), "locked.json")
    os.chmod(path, 0)
    return ["--config", path]


def encrypted(ctx, key_file):
    return ["--config", ctx.config(update("checkpoint", encryption="aes-256-gcm", key_file=key_file))]


CASES = [
    # --- wrong JSON types ------------------------------------------------------------
    field("model", "layers", "2"),
    field("model", "hidden", 32.0),
    field("model", "heads", True),
    field("model", "layers", 2 ** 40, "model.layers", "32 bits"),
    field("model", "vocab_pad_to", [128]),
    field("model", "bias", 1),
    field("model", "norm", 1),
    field("model", "rope_theta", "1e4"),
    field("parallel", "schedule", None),
    field("parallel", "sequence_parallel", "false"),
    field("train", "steps", 1.5),
    field("train", "lr", True),
    field("train", "seed", -1),
    field("optim", "beta1", "0.9"),
    field("data", "shuffle", "yes"),
    field("checkpoint", "async", "true"),
    field("backend", "threads", 2.5),
    edit("a section that is not an object", lambda c: c.__setitem__("train", [1, 2]), "'train'"),
    # --- out of range ------------------------------------------------------------------
    field("model", "layers", 0),
    field("model", "hidden", -32),
    field("model", "heads", 0),
    field("model", "kv_heads", -1),
    field("model", "ffn_hidden", -4),
    field("model", "vocab", 1),
    field("model", "seq_len", 0),
    field("model", "rope_theta", -1.0),
    field("model", "norm_eps", 0.0),
    field("model", "init_std", -0.02),
    field("parallel", "tp", 0),
    field("parallel", "pp", -1),
    field("parallel", "dp", -2),
    field("parallel", "virtual_stages", 0),
    field("parallel", "bucket_mb", 0),
    field("train", "steps", -1),
    field("train", "global_batch", 0),
    field("train", "micro_batch", -2),
    field("train", "lr", -1e-3),
    field("train", "grad_clip", -1.0),
    field("train", "eval_every", -1),
    field("train", "log_every", 0),
    field("train", "max_bad_steps", -1),
    field("train", "max_bad_steps", "ten"),
    field("parallel", "timeout_s", 0),
    field("parallel", "timeout_s", -5.0),
    field("parallel", "timeout_s", "600"),
    edit("eval_batches 0 with evaluation on", update("train", eval_every=1, eval_batches=0),
         "train.eval_batches"),
    edit("warmup longer than the run", update("train", steps=5, warmup_steps=10),
         "train.warmup_steps=10", "train.steps=5"),
    edit("min_lr above lr", update("train", lr=1e-4, min_lr=1e-3), "train.min_lr", "train.lr"),
    field("optim", "beta1", 1.0),
    field("optim", "beta2", -0.1),
    field("optim", "eps", 0.0),
    field("optim", "weight_decay", -0.1),
    field("optim", "zero", 3),
    field("data", "valid_fraction", 1.0),
    field("checkpoint", "keep", 0),
    field("checkpoint", "every", -1),
    field("backend", "threads", -1),
    argv("an infinite learning rate", lambda ctx: ["--config", ctx.write(
        '{"model": %s, "train": {"lr": 1e999}, "data": {"train": "%s"}}' %
        (json.dumps(TINY_MODEL), ctx.train))], "train.lr", "1e999"),
    sets(["train.lr=1e999"], "train.lr", "1e999"),
    # --- unknown enum values --------------------------------------------------------
    field("model", "preset", "mistral"),
    field("model", "norm", "batchnorm", "model.norm", "layernorm"),
    field("model", "activation", "relu", "model.activation", "gelu"),
    field("model", "position", "alibi", "model.position", "rope"),
    field("model", "recompute", "partial", "model.recompute", "selective"),
    field("parallel", "schedule", "zero-bubble", "parallel.schedule", "1f1b"),
    field("train", "precision", "fp16", "train.precision", "bf16"),
    field("optim", "name", "sgd", "optim.name", "adamw"),
    edit("checkpoint.encryption unknown", update("checkpoint", encryption="aes-128-cbc"),
         "checkpoint.encryption", "aes-256-gcm"),
    field("backend", "device", "tpu"),
    field("backend", "device", ""),
    # --- sections that disagree -------------------------------------------------------
    edit("hidden not divisible by heads", update("model", hidden=30, heads=4),
         "model.hidden=30", "model.heads=4"),
    edit("heads not divisible by kv_heads", update("model", kv_heads=3),
         "model.heads=4", "model.kv_heads=3"),
    edit("rope with an odd head dimension", update("model", hidden=36, position="rope"),
         "model.position='rope'", "model.hidden=36"),
    edit("global_batch not divisible by micro_batch", update("train", global_batch=3, micro_batch=2),
         "train.global_batch=3", "train.micro_batch=2"),
    edit("global_batch not divisible by micro_batch x dp",
         lambda c: (update("train", global_batch=6, micro_batch=2)(c), update("parallel", dp=2)(c)),
         "train.global_batch=6", "train.micro_batch=2", "parallel.dp=2"),
    edit("virtual_stages without the interleaved schedule", update("parallel", virtual_stages=2, pp=2),
         "parallel.virtual_stages=2", "parallel.schedule"),
    edit("interleaving one stage", update("parallel", virtual_stages=2, schedule="interleaved"),
         "parallel.virtual_stages=2", "parallel.pp"),
    edit("more model chunks than layers", update("parallel", pp=2, virtual_stages=2,
                                                 schedule="interleaved"),
         "model.layers=2", "parallel.pp=2", "parallel.virtual_stages=2"),
    edit("sequence parallel with tp not dividing seq_len",
         lambda c: (update("parallel", tp=4, sequence_parallel=True)(c), update("model", seq_len=18)(c)),
         "parallel.tp=4", "model.seq_len=18"),
    edit("checkpoint.every without a directory",
         lambda c: c["checkpoint"].update({"dir": "", "every": 1}), "checkpoint.every", "checkpoint.dir"),
    edit("encryption without a directory",
         lambda c: c["checkpoint"].update({"dir": "", "encryption": "sm4-gcm"}),
         "checkpoint.encryption", "checkpoint.dir"),
    edit("async saves without a directory",
         lambda c: c["checkpoint"].update({"dir": "", "async": True}), "checkpoint.async", "checkpoint.dir"),
    edit("data.train empty", update("data", train=""), "data.train"),
    edit("valid_fraction beside a validation set", update("data", valid_fraction=0.1),
         "data.valid_fraction=0.1", "data.valid"),
    edit("valid_fraction leaving no training window",
         lambda c: (update("data", valid="", valid_fraction=0.5)(c), update("model", seq_len=3000)(c)),
         "data.valid_fraction"),
    edit("data.train shorter than one window", update("model", seq_len=10000),
         "data.train", "model.seq_len"),
    edit("more than 2^31 tokens per step", update("train", global_batch=2147483646),
         "train.global_batch=2147483646", "model.seq_len=16"),
    # --- unknown names ----------------------------------------------------------------
    edit("unknown section", lambda c: c.__setitem__("modle", {"layers": 2}), "'modle'", "'model'"),
    edit("unknown key", update("train", lrate=1e-3), "train.lrate", "train.lr"),
    edit("a key in the wrong section", update("model", lr=1e-3), "model.lr", "train.lr"),
    sets(["parallel.tpp=2"], "parallel.tpp", "parallel.tp"),
    sets(["optimizer.beta1=0.8"], "'optimizer'", "'optim'"),
    # --- layouts, checked for N ranks by qj-plan ----------------------------------------
    plan(3, ["parallel.tp=2"], "parallel.tp=2", "world of 3 ranks"),
    plan(4, ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "train.global_batch=8"],
         "parallel.dp=2", "world has 4"),
    plan(2, ["train.global_batch=6", "train.micro_batch=2"], "train.global_batch=6", "dp=2"),
    plan(8, ["parallel.tp=8"], "parallel.tp=8", "model.heads=4"),
    plan("-4", [], "--world"),
    plan(None, ["model.vocab=2147483600"], "model.vocab=2147483600", "model.vocab_pad_to=128"),
    plan(None, ["model.hidden=1073741824", "model.heads=1"], "model.hidden"),
    plan(None, ["model.heads=65536", "model.hidden=65536", "model.layers=65536", "parallel.tp=65536",
                "parallel.pp=65536"], "parallel.tp=65536", "parallel.pp=65536"),
    edit("a mesh of more than 2^31 ranks",
         lambda c: (update("model", heads=65536, hidden=65536, layers=65536)(c),
                    update("parallel", tp=65536, pp=65536)(c)),
         "parallel.tp=65536", "parallel.pp=65536"),
    plan("four", [], "--world", "four"),
    # --- files ----------------------------------------------------------------------------
    argv("config file missing", lambda ctx: ["--config", ctx.path("absent.json")], "absent.json"),
    argv("config path is a directory", lambda ctx: ["--config", ctx.inputs], "directory"),
    argv("config file unreadable", unreadable_config, "locked.json"),
    argv("empty config file", lambda ctx: ["--config", ctx.write("", "empty.json")], "empty.json"),
    argv("unterminated string", lambda ctx: ["--config", ctx.write('{"model": {"norm": "rms', "cut.json")],
         "cut.json"),
    argv("JSON array at the top", lambda ctx: ["--config", ctx.write("[1, 2]", "list.json")],
         "list.json", "object"),
    argv("JSON after the object", lambda ctx: ["--config", ctx.write("{} {}", "two.json")], "two.json"),
    edit("data.train missing", update("data", train="/nonexistent/qj/train"), "data.train",
         "/nonexistent/qj/train"),
    edit("data.valid missing", update("data", valid="/nonexistent/qj/valid"), "data.valid"),
    argv("data.train with a truncated .idx", truncated_idx, "data.train", "short.idx"),
    argv("data.train with no .bin", bin_missing, "data.train", "lonely.bin"),
    argv("checkpoint.key_file missing", lambda ctx: encrypted(ctx, ctx.path("no.key")),
         "checkpoint.key_file", "no.key"),
    argv("checkpoint.key_file not hex", lambda ctx: encrypted(ctx, ctx.write("not a key\n", "bad.key")),
         "checkpoint.key_file", "bad.key"),
    edit("checkpoint.resume names no checkpoint", update("checkpoint", resume="/nonexistent/step_5"),
         "checkpoint.resume", "/nonexistent/step_5"),
    argv("--init-from missing", lambda ctx: ["--config", ctx.config(), "--init-from",
                                             ctx.path("absent.safetensors")], "absent.safetensors"),
    argv("--metrics-jsonl in a missing folder", lambda ctx: [
        "--config", ctx.config(), "--metrics-jsonl", "/nonexistent/qj/m.jsonl"],
        "--metrics-jsonl", "/nonexistent/qj/m.jsonl"),
    argv("--export to a missing folder", lambda ctx: [
        "--config", ctx.config(), "--export", "/nonexistent/qj/w.safetensors"],
        "/nonexistent/qj/w.safetensors"),
    argv("--init-from a directory", lambda ctx: ["--config", ctx.config(), "--init-from", ctx.inputs],
         "train.init_from"),
    argv("--export to a directory", lambda ctx: ["--config", ctx.config(), "--export", ctx.inputs],
         "train.export_path"),
    argv("checkpoint.dir is a file", lambda ctx: ["--config", ctx.config(
        update("checkpoint", dir=ctx.write("not a folder", "ckpt")))], "checkpoint.dir"),
    # --- command lines -------------------------------------------------------------------
    argv("unknown flag", lambda ctx: ["--config", ctx.config(), "--steps", "5"], "--steps"),
    argv("unknown flag last", lambda ctx: ["--config", ctx.config(), "--verbose"], "--verbose"),
    argv("flag without a value", lambda ctx: ["--config"], "--config"),
    argv("config without --config", lambda ctx: [ctx.config()], "config.json"),
    argv("no --config", lambda ctx: [], "--config"),
    sets(["train.lr"], "train.lr", "section.key=value"),
    sets(["=5"], "'=5'"),
    sets(["train.=5"], "train.="),
    sets(["train.steps=abc"], "train.steps", "abc"),
    sets(["model.hidden=3.5"], "model.hidden", "3.5"),
    sets(["model.bias=yes"], "model.bias", "yes"),
    sets(["train.seed=-1"], "train.seed"),
    # --- the other tools --------------------------------------------------------------------
    sets(["model.heads=5"], "model.heads=5", program="qj-plan"),
    argv("qj-plan unknown flag", lambda ctx: ["--config", ctx.config(), "--np", "2"], "--np",
         program="qj-plan"),
    argv("qj-ckpt no such checkpoint", lambda ctx: ["info", ctx.path("none")], "none",
         program="qj-ckpt"),
    argv("qj-ckpt unknown command", lambda ctx: ["check", ctx.inputs], "'check'", program="qj-ckpt"),
    argv("qj-ckpt export without --output", lambda ctx: ["export", ctx.inputs], "--output",
         program="qj-ckpt"),
    argv("qj-sample --tokens 0", lambda ctx: ["--config", ctx.config(), "--weights", "w", "--prompt", "x",
                                              "--tokens", "0"], "--tokens", program="qj-sample"),
    argv("qj-sample bad config", lambda ctx: ["--config", ctx.config(update("model", norm="l2")),
                                              "--weights", "w", "--prompt", "x"], "model.norm",
         program="qj-sample"),
    argv("qj-prep --threads 0", lambda ctx: ["--input", ctx.write("text", "a.txt"), "--output",
                                             os.path.join(ctx.outputs, "p"), "--threads", "0"],
         "--threads", program="qj-prep"),
]


class BadConfigCorpus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qj_bad_config_")
        cls.corpus = os.path.join(cls.tmp, "corpus")
        made = subprocess.run([tool("qj-make-corpus"), "--output", cls.corpus, "--vocab", "512",
                               "--train-tokens", "4000", "--valid-tokens", "1000"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        cls.usage = {}  # program -> the lines of its --help, which may follow an error line

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def usage_lines(self, program):
        if program not in self.usage:
            shown = subprocess.run([tool(program), "--help"], capture_output=True, text=True,
                                   env=ENV, timeout=TIME_LIMIT_S)
            self.usage[program] = set(shown.stdout.splitlines())
        return self.usage[program]

    def run_case(self, program, args):
        """Runs one case; a run past TIME_LIMIT_S is killed with its process group and fails."""
        command = [tool(program)] + args
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=ENV, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=TIME_LIMIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            self.fail("hung: %s ran past %d s\nstderr:\n%s" % (command, TIME_LIMIT_S, stderr))
        return process.returncode, stdout, stderr

    def test_every_bad_input_ends_with_one_error_line_and_exit_2(self):
        self.assertGreaterEqual(len(CASES), 60)
        names = [case.name for case in CASES]
        self.assertEqual(len(names), len(set(names)), msg="case names must be unique")
        for number, case in enumerate(CASES):
            with self.subTest(case=case.name, program=case.program):
                if case.build is unreadable_config and os.geteuid() == 0:
                    self.skipTest("root reads a file whatever its permissions")
                inputs = os.path.join(self.tmp, "in%03d" % number)
                outputs = os.path.join(self.tmp, "out%03d" % number)
                os.makedirs(inputs)
                os.makedirs(outputs)
                args = case.build(Context(self.corpus, inputs, outputs))
                if case.program == "qj-train":
                    args = ["--metrics-jsonl", os.path.join(outputs, "metrics.jsonl")] + args
                code, stdout, stderr = self.run_case(case.program, args)
                detail = "%s %s\nexit %s\nstdout:\n%s\nstderr:\n%s" % (
                    case.program, " ".join(args), code, stdout, stderr)
                for sign in CRASH_SIGNS:
                    self.assertNotIn(sign, stderr, msg=detail)
                self.assertEqual(code, 2, msg=detail)
                errors = [l for l in stderr.splitlines() if l.startswith("error:")]
                self.assertEqual(len(errors), 1, msg=detail)
                for needle in case.needles:
                    self.assertIn(needle, errors[0], msg=detail)
                # Besides the error line, only the program's usage may follow.
                usage = self.usage_lines(case.program)
                others = [l for l in stderr.splitlines()
                          if l.strip() and l != errors[0] and l not in usage]
                self.assertEqual(others, [], msg=detail)
                self.assertEqual(stdout, "", msg=detail)
                self.assertEqual(os.listdir(outputs), [], msg=detail)


if __name__ == "__main__":
    unittest.main()
