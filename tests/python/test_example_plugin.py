"""The out-of-tree example plugin (examples/plugin, libqj_simdev.so) end to
end: `cmake --install` puts the plugin headers and their CMake package in a
temporary prefix; the example is configured and built against that prefix
only; qj-backend-test passes every mandatory op (the mixture-of-experts ops
are reported missing, not failed); a small GPT trains on it with the cpu
backend's losses (1e-4 relative); and under mpirun a pp=2 run with one stage
on the cpu backend and the other on simdev (both ways round: mixed backends,
parallel.stage_backends) trains with the same losses; built with MPI,
libqj_simdev.so's own device-memory collectives pass every collective against
MPI (test_device_ccl_plugin.py trains with them)."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from qj_paths import BUILD_DIR, SOURCE_DIR, run, tool

ENV = dict(os.environ, OMP_NUM_THREADS="2")
MOE_OPS = ["gather_rows", "combine_rows", "row_dot", "grouped_matmul", "grouped_matmul_wgrad"]
_tmp = None
_simdev = None


def setUpModule():
    global _tmp, _simdev
    _tmp = tempfile.mkdtemp(prefix="qj_simdev_")
    prefix = os.path.join(_tmp, "prefix")
    steps = [
        ["cmake", "--install", BUILD_DIR, "--prefix", prefix],
        # A clean environment for the example: only the prefix is searched.
        ["cmake", "-S", os.path.join(SOURCE_DIR, "examples", "plugin"), "-B",
         os.path.join(_tmp, "build"), "-DCMAKE_PREFIX_PATH=" + prefix,
         "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF", "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", os.path.join(_tmp, "build"), "-j2"],
    ]
    for step in steps:
        result = run(step, env=ENV, timeout=600)
        assert result.returncode == 0, " ".join(step) + "\n" + result.stdout + result.stderr
    _simdev = os.path.join(_tmp, "build", "libqj_simdev.so")


def tearDownModule():
    shutil.rmtree(_tmp, ignore_errors=True)


class InstalledPackage(unittest.TestCase):
    def test_prefix_holds_the_headers_and_the_package_config(self):
        prefix = os.path.join(_tmp, "prefix")
        self.assertTrue(os.path.isfile(os.path.join(prefix, "include/qianjun/plugin/qj_device.h")))
        config_dirs = [os.path.join(prefix, lib, "cmake/qianjun_plugin") for lib in ("lib", "lib64")]
        self.assertTrue(any(os.path.isfile(os.path.join(d, "qianjun_pluginConfig.cmake"))
                            for d in config_dirs))

    def test_the_collective_header_is_installed_and_simccl_exports_only_its_entry(self):
        prefix = os.path.join(_tmp, "prefix")
        self.assertTrue(os.path.isfile(os.path.join(prefix, "include/qianjun/plugin/qj_collective.h")))
        simccl = os.path.join(_tmp, "build", "libqj_simccl.so")
        if not shutil.which("mpicc"):
            self.skipTest("no MPI: libqj_simccl.so is not built")
        symbols = run(["nm", "-D", "--defined-only", simccl]).stdout
        self.assertIn("qj_collective_plugin_v1", symbols)
        self.assertNotIn("qj_device_plugin_v1", symbols)
        self.assertNotIn("qianjun", run(["ldd", simccl]).stdout)

    def test_simdev_exports_its_device_memory_collectives_built_out_of_tree(self):
        if not shutil.which("mpicc"):
            self.skipTest("no MPI: libqj_simdev.so has no collectives")
        symbols = run(["nm", "-D", "--defined-only", _simdev]).stdout
        self.assertIn("qj_collective_plugin_v1", symbols)
        self.assertNotIn("simccl_host_table", symbols)  # simccl's table inside stays hidden
        # Every collective on simdev's device memory against MPI, 2 ranks.
        env = dict(ENV, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
        result = run([shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", "2",
                      tool("qj-backend-test"), "--collective-plugin", _simdev], env=env, timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr)
        self.assertIn("ABI 1.1, device (plugin:%s) memory" % _simdev, result.stdout)
        self.assertIn("PASSED", result.stdout)

    def test_the_example_was_compiled_against_the_prefix_not_the_source_tree(self):
        flags = run(["grep", "-rh", "CXX_INCLUDES", os.path.join(_tmp, "build")]).stdout
        self.assertIn(os.path.join(_tmp, "prefix", "include"), flags)
        self.assertNotIn(os.path.join(SOURCE_DIR, "include"), flags)

    def test_only_the_entry_symbol_is_exported_and_no_qianjun_library_is_linked(self):
        symbols = run(["nm", "-D", "--defined-only", _simdev]).stdout
        self.assertIn("qj_device_plugin_v1", symbols)
        self.assertNotIn("qj::", run(["nm", "-DC", "--defined-only", _simdev]).stdout)
        self.assertNotIn("qianjun", run(["ldd", _simdev]).stdout)


class Conformance(unittest.TestCase):
    def test_every_mandatory_op_passes_and_the_moe_ops_are_missing(self):
        report = os.path.join(_tmp, "simdev.json")
        result = run([tool("qj-backend-test"), "--plugin", _simdev, "--json", report], env=ENV,
                     timeout=900)
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr)
        with open(report) as f:
            data = json.load(f)
        self.assertTrue(data["passed"])
        self.assertTrue(all(c["passed"] for c in data["abi_checks"]), data["abi_checks"])
        coverage = {c["op"]: c["status"] for c in data["coverage"]}
        self.assertEqual({op for op, s in coverage.items() if s != "native"}, set(MOE_OPS))
        self.assertTrue(all(coverage[op] == "missing (optional)" for op in MOE_OPS))
        failed = [r for r in data["ops"] if not r["passed"] and not r["missing"]]
        self.assertEqual(failed, [])
        self.assertEqual({r["op"] for r in data["ops"] if r["missing"]}, set(MOE_OPS))
        device = [c for c in data["abi_checks"] if c["check"] == "device"][0]["detail"]
        self.assertIn("simdev", device)
        self.assertNotIn("capabilities 0x3", device)  # never QJ_CAP_HOST_ADDRESSABLE (0x2)


class Training(unittest.TestCase):
    SMALL = ["--set", "train.steps=3", "--set", "model.layers=2", "--set", "model.hidden=64",
             "--set", "model.heads=4", "--set", "model.seq_len=32", "--set", "model.vocab=512",
             "--set", "train.global_batch=4", "--set", "train.micro_batch=2",
             "--set", "train.eval_every=0", "--set", "train.warmup_steps=1"]

    def train(self, device, name, ranks=0, extra=(), stages=None):
        corpus = os.path.join(_tmp, "corpus")
        if not os.path.isdir(corpus):
            made = run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "512",
                        "--train-tokens", "20000", "--valid-tokens", "2000"], timeout=120)
            self.assertEqual(made.returncode, 0, made.stdout + made.stderr)
        metrics = os.path.join(_tmp, name + ".jsonl")
        command = [tool("qj-train"), "--config", os.path.join(SOURCE_DIR, "configs", "synthetic.json"),
                   "--set", "backend.device=" + device,
                   "--set", "data.train=" + os.path.join(corpus, "train"),
                   "--set", "data.valid=" + os.path.join(corpus, "valid"),
                   "--metrics-jsonl", metrics] + self.SMALL + list(extra)
        env = ENV
        if stages:  # one rank per pipeline stage, each on its own backend
            ranks = len(stages)
            command += ["--set", "parallel.pp=%d" % len(stages),
                        "--set", "parallel.stage_backends=" + json.dumps(stages)]
        if ranks:
            command = [shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np",
                       str(ranks)] + command
            env = dict(ENV, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
        result = run(command, env=env, timeout=600)
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr)
        with open(metrics) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return result, [r["loss"] for r in rows if "loss" in r]

    def test_a_small_gpt_trains_on_simdev_with_the_cpu_losses(self):
        _, want = self.train("cpu", "cpu")
        result, got = self.train("plugin:" + _simdev, "simdev")
        self.assertEqual(len(want), 3)
        self.assertEqual(len(got), 3)
        for step, (g, w) in enumerate(zip(got, want)):
            self.assertLessEqual(abs(g - w), 1e-4 * abs(w), "step %d: %r vs %r" % (step + 1, got, want))
        self.assertIn("backend plugin:%s: 26 ops native, 5 missing (not needed by this model: %s)"
                      % (_simdev, ", ".join(MOE_OPS)), result.stdout + result.stderr)

    @unittest.skipIf(shutil.which("mpirun") is None, "mpirun is not on PATH")
    def test_simdev_with_simccl_at_tp2_gives_the_mpi_run_losses(self):
        # Device tensors staged through host buffers to the collective plugin.
        simccl = os.path.join(_tmp, "build", "libqj_simccl.so")
        _, want = self.train("plugin:" + _simdev, "simdev_mpi", 2, ["--set", "parallel.tp=2"])
        _, got = self.train("plugin:" + _simdev, "simdev_simccl", 2,
                            ["--set", "parallel.tp=2", "--set", "backend.collectives=plugin:" + simccl])
        self.assertEqual(len(want), 3)
        self.assertEqual(got, want)

    @unittest.skipIf(shutil.which("mpirun") is None, "mpirun is not on PATH")
    def test_pp2_with_one_stage_on_cpu_and_one_on_simdev_trains_with_the_cpu_losses(self):
        _, want = self.train("cpu", "cpu")
        for stages in (["cpu", "plugin:" + _simdev], ["plugin:" + _simdev, "cpu"]):
            with self.subTest(stages=stages):
                result, got = self.train("cpu", "mixed", stages=stages)
                self.assertEqual(len(got), 3)
                for step, (g, w) in enumerate(zip(got, want)):
                    self.assertLessEqual(abs(g - w), 1e-4 * abs(w),
                                         "step %d: %r vs %r" % (step + 1, got, want))
                simdev_stage = stages.index("plugin:" + _simdev)
                self.assertIn("pipeline stage %d (rank %d): backend plugin:%s: 26 ops native"
                              % (simdev_stage, simdev_stage, _simdev), result.stdout + result.stderr)

    @unittest.skipIf(shutil.which("mpirun") is None, "mpirun is not on PATH")
    def test_pp2_with_cpu_and_simdev_stages_has_the_single_process_parameters(self):
        # The equivalence matrix's pp=2 1F1B layout: losses and every final
        # parameter against one cpu process (1e-5). The two stages' copies of the
        # tied embedding are updated by two AdamW kernels: equal to rounding
        # (measured 1e-7), not bit for bit.
        env = dict(ENV, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
        for order in ("cpu,plugin:" + _simdev, "plugin:" + _simdev + ",cpu"):
            with self.subTest(order=order):
                result = run([shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe",
                              "-np", "2", tool("qj-equivalence"), "--data",
                              os.path.join(_tmp, "equivalence"), "--only", "pp2 1f1b",
                              "--param-tolerance", "1e-5", "--tied-tolerance", "1e-5",
                              "--stage-backends", order], env=env, timeout=600)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertIn("ok    pp2 1f1b mb1 (8 micro)", result.stdout)
                self.assertIn("1 layouts, 0 differ", result.stdout)


if __name__ == "__main__":
    unittest.main()
