"""Device plugins end to end: qj-train on the CPU backend loaded as a plugin
(libqj_cpu_plugin.so) gives the same losses as the built-in cpu backend, and
broken plugins end qj-train and qj-backend-test with one clear message and a
non-zero exit code, never a crash."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from qj_paths import BUILD_DIR, tool

CPU_PLUGIN = os.path.join(BUILD_DIR, "libqj_cpu_plugin.so")
ENV = dict(os.environ, OMP_NUM_THREADS="2")
_tmp = None
_config = None


def test_plugin_path(mode):
    return os.path.join(BUILD_DIR, "libqj_test_%s.so" % mode)


def setUpModule():
    global _tmp, _config
    _tmp = tempfile.mkdtemp(prefix="qj_plugin_")
    corpus = os.path.join(_tmp, "corpus")
    made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "97",
                           "--train-tokens", "20000", "--valid-tokens", "2000"],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    config = {"model": {"preset": "gpt2", "layers": 2, "hidden": 64, "heads": 4, "vocab": 97,
                        "seq_len": 32},
              "train": {"steps": 6, "global_batch": 4, "micro_batch": 2, "warmup_steps": 1,
                        "eval_every": 3, "eval_batches": 2},
              "data": {"train": os.path.join(corpus, "train"),
                       "valid": os.path.join(corpus, "valid")}}
    _config = os.path.join(_tmp, "tiny.json")
    with open(_config, "w") as f:
        json.dump(config, f)


def tearDownModule():
    shutil.rmtree(_tmp, ignore_errors=True)


def train(device, name, extra=()):
    metrics = os.path.join(_tmp, name + ".jsonl")
    command = [tool("qj-train"), "--config", _config, "--set", "backend.device=" + device,
               "--metrics-jsonl", metrics] + list(extra)
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    return result, metrics


def losses(jsonl):
    with open(jsonl) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # Step records (the file also holds other records, e.g. validation).
    return [(r["step"], r["loss"], r["grad_norm"]) for r in rows if "loss" in r]


class PluginTraining(unittest.TestCase):
    def test_cpu_plugin_trains_with_the_losses_of_the_builtin_cpu_backend(self):
        builtin, builtin_metrics = train("cpu", "builtin")
        self.assertEqual(builtin.returncode, 0, builtin.stderr)
        plugin, plugin_metrics = train("plugin:" + CPU_PLUGIN, "plugin")
        self.assertEqual(plugin.returncode, 0, plugin.stderr)
        want, got = losses(builtin_metrics), losses(plugin_metrics)
        self.assertEqual(len(want), 6)
        # The same kernels on the same inputs: the same numbers, bit for bit.
        self.assertEqual(got, want)

    def test_plugin_found_by_name_in_QJ_PLUGIN_PATH(self):
        env = dict(ENV, QJ_PLUGIN_PATH=BUILD_DIR)
        result = subprocess.run([tool("qj-train"), "--config", _config, "--set",
                                 "backend.device=plugin:qj_cpu_plugin", "--set", "train.steps=1"],
                                capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)


MINOR0_PLUGIN = test_plugin_path("cpu_minor0")
MOE_OPS = "gather_rows, combine_rows, row_dot, grouped_matmul, grouped_matmul_wgrad"


class StartupCoverage(unittest.TestCase):
    """The coverage line (or table) rank 0 prints for the chosen backend, and
    the check that refuses a model whose ops the backend lacks."""

    def test_builtin_cpu_reports_every_op_native_on_one_line(self):
        result, _ = train("cpu", "coverage_cpu", ["--set", "train.steps=1"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("backend cpu: 31 ops native\n", result.stdout + result.stderr)

    def test_minor0_plugin_trains_a_dense_model_and_says_which_ops_it_lacks(self):
        result, _ = train("plugin:" + MINOR0_PLUGIN, "coverage_minor0", ["--set", "train.steps=1"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("backend plugin:%s: 26 ops native, 5 missing (not needed by this model: %s)"
                      % (MINOR0_PLUGIN, MOE_OPS), result.stdout + result.stderr)

    def test_minor0_plugin_refuses_a_moe_model_naming_the_five_ops(self):
        result, _ = train("plugin:" + MINOR0_PLUGIN, "coverage_moe",
                          ["--set", "model.moe_experts=4", "--set", "model.moe_top_k=2"])
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 2, output)
        self.assertIn("error: backend 'plugin:%s' lacks 5 ops this model needs: %s (needed by "
                      "model.moe_experts=4)" % (MINOR0_PLUGIN, MOE_OPS), result.stderr)
        # One error line, from the coverage check, before any set-up output.
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertNotIn("needs the mixture-of-experts ops", output)  # the model's own check

    def test_strict_accepts_a_backend_whose_ops_are_all_native(self):
        result, _ = train("plugin:" + MINOR0_PLUGIN, "coverage_strict",
                          ["--set", "train.steps=1", "--set", "backend.strict=true"])
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_QJ_OP_COVERAGE_full_prints_the_whole_table(self):
        env = dict(ENV, QJ_OP_COVERAGE="full")
        result = subprocess.run([tool("qj-train"), "--config", _config, "--set", "train.steps=1"],
                                capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("  attention_backward       native", result.stdout + result.stderr)


class BrokenPlugins(unittest.TestCase):
    def assertRefused(self, result, *needles):
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertGreater(result.returncode, 0, "killed by a signal: " + output)
        for needle in needles:
            self.assertIn(needle, output)

    def test_trainer_refuses_each_broken_plugin_naming_it(self):
        cases = {
            os.path.join(_tmp, "missing.so"): ["no such file"],
            test_plugin_path("no_symbol"): ["no entry symbol qj_device_plugin_v1", "undefined symbol"],
            test_plugin_path("major2"): ["device ABI 2.3", "supports major 1 (1.1)"],
            test_plugin_path("small"): ["struct_size is 16 bytes"],
            test_plugin_path("null"): ["no device found (simulated)", "returned no table"],
            test_plugin_path("abort"): ["aborted: device firmware missing (simulated)"],
        }
        for path, needles in cases.items():
            with self.subTest(plugin=os.path.basename(path)):
                result, _ = train("plugin:" + path, "broken")
                self.assertRefused(result, path, *needles)
                self.assertIn("error:", result.stderr)

    def test_trainer_refuses_a_plugin_without_the_ops_the_model_needs_naming_them_all(self):
        # libqj_test_partial.so loads, but has no op except fill: the start-up
        # coverage check names every missing op at once, before any allocation.
        path = test_plugin_path("partial")
        result, _ = train("plugin:" + path, "partial")
        self.assertRefused(result, path, "lacks 25 ops this model needs: add, scale, copy, matmul",
                           "adamw_update (needed by every model)")
        self.assertEqual(result.returncode, 2, result.stderr)

    def test_backend_test_refuses_a_plugin_that_does_not_load(self):
        for mode in ["no_symbol", "major2", "small", "abort"]:
            with self.subTest(mode=mode):
                result = subprocess.run([tool("qj-backend-test"), "--plugin", test_plugin_path(mode)],
                                        capture_output=True, text=True, env=ENV, timeout=120)
                self.assertRefused(result, test_plugin_path(mode))


class BackendTestPlugin(unittest.TestCase):
    def test_backend_test_plugin_reports_abi_checks_and_every_op_in_json(self):
        report = os.path.join(_tmp, "report.json")
        result = subprocess.run([tool("qj-backend-test"), "--plugin", CPU_PLUGIN, "--json", report],
                                capture_output=True, text=True, env=ENV, timeout=600)
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr)
        with open(report) as f:
            data = json.load(f)
        self.assertTrue(data["passed"])
        self.assertEqual(data["plugin"]["abi"], "1.1")
        checks = {c["check"]: c for c in data["abi_checks"]}
        for name in ["zero-size memory and tensors", "odd-size unaligned copies",
                     "stream ordering and events", "error status and last_error"]:
            self.assertTrue(checks[name]["passed"], checks[name])
            self.assertIn(name, result.stdout)
        self.assertEqual({c["status"] for c in data["coverage"]}, {"native"})
        self.assertEqual(len(data["coverage"]), 31)  # 26 ops of minor 0, 5 moe ops of minor 1
        self.assertGreater(len(data["ops"]), 100)
        self.assertTrue(all(row["passed"] for row in data["ops"]))
        # The end-to-end row: a 2-layer GPT trains on the plugin with the cpu's losses.
        self.assertIn("end-to-end training", result.stdout)
        training = data["training"]
        self.assertTrue(training["passed"], training)
        self.assertEqual(len(training["losses"]), training["steps"])
        self.assertEqual(training["losses"], training["cpu_losses"])  # the same kernels
        self.assertEqual(data["ops"][-1]["op"], "end-to-end training")

    def test_backend_test_plugin_fails_when_an_op_fails(self):
        report = os.path.join(_tmp, "partial.json")
        result = subprocess.run([tool("qj-backend-test"), "--plugin", test_plugin_path("partial"),
                                 "--json", report], capture_output=True, text=True, env=ENV,
                                timeout=300)
        self.assertEqual(result.returncode, 1, result.stdout[-3000:] + result.stderr)
        with open(report) as f:
            data = json.load(f)
        self.assertFalse(data["passed"])
        coverage = {c["op"]: c["status"] for c in data["coverage"]}
        self.assertEqual(coverage["fill"], "native")
        self.assertEqual(coverage["matmul"], "missing")
        fill_rows = [row for row in data["ops"] if row["op"] == "fill"]
        self.assertTrue(fill_rows and not any(row["passed"] for row in fill_rows))
        self.assertTrue(any("simulated device fault" in row["message"] for row in fill_rows))

    def faulty(self, fault, op, *flags):
        """qj-backend-test on libqj_test_faulty.so with QJ_TEST_FAULT=fault:op."""
        report = os.path.join(_tmp, "faulty_%s.json" % fault)
        result = subprocess.run([tool("qj-backend-test"), "--plugin", test_plugin_path("faulty"),
                                 "--json", report] + list(flags), capture_output=True, text=True,
                                env=dict(ENV, QJ_TEST_FAULT=fault + ":" + op), timeout=600)
        self.assertEqual(result.returncode, 1, result.stdout[-3000:] + result.stderr)
        with open(report) as f:
            data = json.load(f)
        self.assertFalse(data["passed"])
        return result, data

    def test_backend_test_names_the_op_that_writes_a_nan(self):
        result, data = self.faulty("nan", "gelu_forward", "--filter", "gelu")
        bad = [row for row in data["ops"] if not row["passed"]]
        self.assertTrue(bad)
        self.assertEqual({row["op"] for row in bad}, {"gelu_forward"})
        self.assertTrue(all("is NaN" in row["message"] for row in bad), bad)
        self.assertIn("gelu_forward", result.stdout)
        self.assertTrue(any(row["passed"] for row in data["ops"] if row["op"] == "gelu_backward"))

    def test_backend_test_names_the_op_that_returns_an_error_status(self):
        _, data = self.faulty("error", "gelu_forward", "--filter", "gelu")
        bad = [row for row in data["ops"] if not row["passed"]]
        self.assertEqual({row["op"] for row in bad}, {"gelu_forward"})
        self.assertTrue(all("gelu_forward failed with QJ_ERR_DEVICE" in row["message"] and
                            "simulated fault in gelu_forward" in row["message"] for row in bad), bad)

    def test_the_end_to_end_row_fails_when_an_op_writes_a_nan(self):
        # Only the training row and gelu_forward's rows fail.
        _, data = self.faulty("nan", "gelu_forward")
        failed = {row["op"] for row in data["ops"] if not row["passed"] and not row["missing"]}
        self.assertEqual(failed, {"gelu_forward", "end-to-end training"})
        self.assertFalse(data["training"]["passed"])


if __name__ == "__main__":
    unittest.main()
