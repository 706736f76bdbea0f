"""Collective plugins end to end (backend.collectives, qj_collective.h): qj-train
under mpirun with the example collective plugin (build/libqj_simccl.so, over
MPI, with visible emulations) gives the MPI run's losses, bit for bit, at dp=2,
tp=2 and pp=2 (x dp=2 on 4 ranks); qj-backend-test --collective-plugin passes
every collective on 2 and 4 ranks; broken plugins and bad settings end the run
with one error naming the plugin or the field, exit 2, no crash."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from ccl_runs import ENV, MPIRUN, losses, mpirun, test_ccl, write_tiny_config
from qj_paths import BUILD_DIR, tool

SIMCCL = os.path.join(BUILD_DIR, "libqj_simccl.so")
_tmp = None
_config = None


def setUpModule():
    global _tmp, _config
    _tmp = tempfile.mkdtemp(prefix="qj_ccl_")
    _config = write_tiny_config(_tmp)


def tearDownModule():
    shutil.rmtree(_tmp, ignore_errors=True)


def train(ranks, name, *sets):
    metrics = os.path.join(_tmp, name + ".jsonl")
    command = [tool("qj-train"), "--config", _config, "--metrics-jsonl", metrics]
    for s in sets:
        command += ["--set", s]
    return mpirun(ranks, command), metrics


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class PluginTraining(unittest.TestCase):
    def check_same_losses(self, ranks, name, *layout):
        mpi, mpi_metrics = train(ranks, name + "_mpi", *layout)
        self.assertEqual(mpi.returncode, 0, mpi.stdout[-2000:] + mpi.stderr)
        plugin, plugin_metrics = train(ranks, name + "_plugin", "backend.collectives=plugin:" + SIMCCL,
                                       *layout)
        self.assertEqual(plugin.returncode, 0, plugin.stdout[-2000:] + plugin.stderr)
        want, got = losses(mpi_metrics), losses(plugin_metrics)
        self.assertGreaterEqual(len(want), 4)
        self.assertEqual(got, want)
        return plugin

    def test_dp2_trains_with_the_losses_of_the_mpi_run(self):
        plugin = self.check_same_losses(2, "dp2")
        # The start-up report names the plugin and shows its emulations.
        log = plugin.stdout + plugin.stderr
        self.assertIn("collectives plugin:" + SIMCCL, log)
        self.assertIn("emulated (all_gather + local max)", log)

    def test_tp2_trains_with_the_losses_of_the_mpi_run(self):
        self.check_same_losses(2, "tp2", "parallel.tp=2")

    def test_pp2_dp2_zero1_trains_with_the_losses_of_the_mpi_run(self):
        self.check_same_losses(4, "pp2dp2", "parallel.pp=2", "optim.zero=1")

    def test_plugin_found_by_name_in_QJ_PLUGIN_PATH(self):
        env = dict(ENV, QJ_PLUGIN_PATH=BUILD_DIR)
        result = subprocess.run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "2",
                                 tool("qj-train"), "--config", _config, "--set", "train.steps=1",
                                 "--set", "backend.collectives=plugin:qj_simccl"],
                                capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class Conformance(unittest.TestCase):
    def run_checks(self, ranks):
        report = os.path.join(_tmp, "ccl%d.json" % ranks)
        result = mpirun(ranks, [tool("qj-backend-test"), "--collective-plugin", SIMCCL,
                                "--json", report])
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr)
        self.assertIn("PASSED", result.stdout)
        with open(report) as f:
            data = json.load(f)
        self.assertTrue(data["passed"])
        self.assertEqual(data["ranks"], ranks)
        rows = data["collectives"]
        self.assertEqual([r for r in rows if r["result"] not in ("pass", "unsupported")], [])
        self.assertEqual([r for r in rows if r["result"] == "unsupported"], [])
        routes = {(r["check"], r["dtype"], r["op"]): r["route"] for r in rows}
        self.assertEqual(routes[("all_reduce", "fp32", "sum")], "native")
        self.assertEqual(routes[("all_reduce", "bf16", "max")], "emulated (all_gather + local max)")
        self.assertEqual(routes[("all_gather", "bf16", "")], "emulated (moved as uint16)")
        return result

    def test_every_collective_passes_on_2_ranks(self):
        self.run_checks(2)

    def test_every_collective_passes_on_4_ranks(self):
        self.run_checks(4)


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class BadInput(unittest.TestCase):
    def refused(self, collectives, *expected, tool_name="qj-train", sets=()):
        if tool_name == "qj-train":
            command = [tool("qj-train"), "--config", _config, "--set", "train.steps=1",
                       "--set", "backend.collectives=" + collectives]
            for s in sets:
                command += ["--set", s]
        else:
            command = [tool("qj-backend-test"), "--collective-plugin", collectives]
        result = mpirun(2, command, timeout=120)
        self.assertEqual(result.returncode, 2, result.stdout[-2000:] + result.stderr)
        self.assertNotIn("Segmentation", result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        self.assertEqual(len(errors), 1, result.stderr)
        for text in expected:
            self.assertIn(text, errors[0])
        return errors[0]

    def test_missing_file(self):
        self.refused("plugin:/nonexistent/libqj_simccl.so", "/nonexistent/libqj_simccl.so",
                     "no such file")

    def test_library_without_the_entry_symbol(self):
        self.refused("plugin:" + test_ccl("no_symbol"), test_ccl("no_symbol"),
                     "no entry symbol qj_collective_plugin_v1")

    def test_newer_major(self):
        self.refused("plugin:" + test_ccl("major2"), test_ccl("major2"), "collective ABI 2.0",
                     "supports major 1 (1.1)")

    def test_struct_size_too_small(self):
        self.refused("plugin:" + test_ccl("small"), test_ccl("small"), "struct_size is 16 bytes")

    def test_plugin_that_runs_no_collective_is_refused_before_init(self):
        # Its table lacks every collective (its init would fail too).
        self.refused("plugin:" + test_ccl("init_fails"), test_ccl("init_fails"),
                     "lacks collectives this run needs")

    def test_init_failure_in_the_conformance_tool(self):
        self.refused(test_ccl("init_fails"), test_ccl("init_fails"), "init failed: device error",
                     "the simulated network is down", tool_name="qj-backend-test")

    def test_interleaved_schedule_is_refused(self):
        self.refused("plugin:" + SIMCCL, "parallel.schedule=interleaved", "use 1f1b or gpipe",
                     sets=["parallel.pp=2", "parallel.schedule=interleaved",
                           "parallel.virtual_stages=2", "model.layers=4"])

    def test_bad_setting_names_the_field(self):
        self.refused("nccl", "backend.collectives='nccl'", '"mpi" or "plugin:PATH"')

    def test_conformance_tool_refuses_a_missing_file(self):
        self.refused("/nonexistent/libx.so", "/nonexistent/libx.so", tool_name="qj-backend-test")


if __name__ == "__main__":
    unittest.main()
