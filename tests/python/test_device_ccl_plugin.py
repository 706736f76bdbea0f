"""Device-memory collective plugins (QJ_CCL_MEMORY_DEVICE) end to end, with the
example simulated accelerator (build/libqj_simdev.so, whose memory the host
cannot dereference: its addresses are non-canonical, and the plugin refuses
any pointer that is not simdev memory), which exports its own collectives on
that memory (examples/plugin/simdev_ccl.cpp):
- qj-backend-test --collective-plugin passes every collective against MPI, bit
  for bit, on 2 and 4 ranks, with buffers allocated on simdev;
- qj-train on simdev with those collectives (no host staging: a host buffer
  handed to them is refused, so a staged path would fail) gives, at dp=2,
  tp=2 and pp=2, the losses of the same run with MPI staged through host
  buffers bit for bit, and the single-process cpu run's losses within 1e-4;
- qj-equivalence: dp2 (ZeRO), tp2 and pp2 layouts' losses and parameters equal
  the single process's (on simdev) within 1e-5;
- bad settings (a host or mixed backend, a plugin of another device, bf16
  training that needs the bf16 max simdev lacks) end the run with one error
  naming the plugin and the field, exit 2."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from ccl_runs import ENV, MPIRUN, losses, mpirun, test_ccl, write_tiny_config
from qj_paths import BUILD_DIR, tool

SIMDEV = os.path.join(BUILD_DIR, "libqj_simdev.so")
_tmp = None
_config = None


def setUpModule():
    global _tmp, _config
    _tmp = tempfile.mkdtemp(prefix="qj_devccl_")
    _config = write_tiny_config(_tmp)


def tearDownModule():
    shutil.rmtree(_tmp, ignore_errors=True)


def train(ranks, name, *sets):
    """Runs qj-train; simdev's collectives append their counts to name.stats."""
    metrics = os.path.join(_tmp, name + ".jsonl")
    env = dict(ENV, QJ_SIMDEV_CCL_STATS=os.path.join(_tmp, name + ".stats"))
    command = [tool("qj-train"), "--config", _config, "--metrics-jsonl", metrics]
    for s in sets:
        command += ["--set", s]
    if ranks > 1:
        return mpirun(ranks, command, env=env), metrics
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300), metrics


def device_traffic(name):
    """(calls, bytes) simdev's device-memory collectives ran in run `name`."""
    path = os.path.join(_tmp, name + ".stats")
    if not os.path.exists(path):
        return 0, 0
    calls = sent = 0
    with open(path) as f:
        for line in f:
            fields = dict(item.split("=") for item in line.split()[1:])
            calls += int(fields["calls"])
            sent += int(fields["bytes"])
    return calls, sent


def train_losses(jsonl):
    with open(jsonl) as f:
        return [r["loss"] for r in (json.loads(line) for line in f if line.strip()) if "loss" in r]


ON_SIMDEV = ("backend.device=plugin:" + SIMDEV,)
DEVICE_CCL = ("backend.collectives=plugin:" + SIMDEV,)


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class DeviceTraining(unittest.TestCase):
    cpu_losses = None

    def cpu_reference(self):
        if DeviceTraining.cpu_losses is None:
            result, metrics = train(1, "cpu_single")
            self.assertEqual(result.returncode, 0, result.stdout[-2000:] + result.stderr)
            DeviceTraining.cpu_losses = train_losses(metrics)
        return DeviceTraining.cpu_losses

    def check(self, ranks, name, *layout, min_calls=4):
        staged, staged_metrics = train(ranks, name + "_staged", *(ON_SIMDEV + layout))
        self.assertEqual(staged.returncode, 0, staged.stdout[-2000:] + staged.stderr)
        device, device_metrics = train(ranks, name + "_device", *(ON_SIMDEV + DEVICE_CCL + layout))
        self.assertEqual(device.returncode, 0, device.stdout[-2000:] + device.stderr)
        # The same bytes move as through MPI's host staging: bit for bit.
        want, got = losses(staged_metrics), losses(device_metrics)
        self.assertGreaterEqual(len(want), 4)
        self.assertEqual(got, want)
        # And the single cpu process's losses, to the simdev kernels' rounding.
        cpu = self.cpu_reference()
        simdev = train_losses(device_metrics)
        self.assertEqual(len(simdev), len(cpu))
        for step, (g, w) in enumerate(zip(simdev, cpu)):
            self.assertLessEqual(abs(g - w), 1e-4 * abs(w), "step %d: %r vs %r" % (step + 1, simdev, cpu))
        log = device.stdout + device.stderr
        self.assertIn("collectives plugin:" + SIMDEV, log)
        # The device tensors went through simdev's collectives (a host-staged
        # path would hand them host buffers, which go to MPI instead).
        calls, sent = device_traffic(name + "_device")
        self.assertGreaterEqual(calls, min_calls, log[-2000:])
        self.assertGreater(sent, 0)
        self.assertEqual(device_traffic(name + "_staged"), (0, 0))
        return device

    def test_dp2(self):
        self.check(2, "dp2")

    def test_tp2(self):
        self.check(2, "tp2", "parallel.tp=2")

    def test_pp2(self):
        self.check(2, "pp2", "parallel.pp=2")

    def test_pp2_dp2_zero1(self):
        self.check(4, "pp2dp2", "parallel.pp=2", "optim.zero=1")


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class Equivalence(unittest.TestCase):
    def test_dp_tp_and_pp_parameters_equal_the_single_process(self):
        # The equivalence matrix's layouts (the gpt2 ones: simdev has no MoE
        # ops) with their collectives on simdev's device memory, against the
        # single process on simdev: losses and every final parameter, 1e-5.
        for layout in ("dp2 zero tiny buckets", "tp2 selective", "pp2 1f1b mb1 (8 micro)"):
            with self.subTest(layout=layout):
                result = mpirun(2, [tool("qj-equivalence"), "--data", os.path.join(_tmp, "equivalence"),
                                    "--device", "plugin:" + SIMDEV, "--collectives", "plugin:" + SIMDEV,
                                    "--only", layout, "--param-tolerance", "1e-5"], timeout=600)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertIn("ok    " + layout, result.stdout)
                self.assertIn("1 layouts, 0 differ", result.stdout)


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class Conformance(unittest.TestCase):
    def run_checks(self, ranks):
        report = os.path.join(_tmp, "devccl%d.json" % ranks)
        result = mpirun(ranks, [tool("qj-backend-test"), "--collective-plugin", SIMDEV,
                                "--json", report])
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr)
        self.assertIn("PASSED", result.stdout)
        self.assertIn("device (plugin:%s) memory" % SIMDEV, result.stdout)
        with open(report) as f:
            data = json.load(f)
        self.assertTrue(data["passed"])
        self.assertEqual(data["ranks"], ranks)
        rows = data["collectives"]
        self.assertEqual([r for r in rows if r["result"] not in ("pass", "unsupported")], [])
        routes = {(r["check"], r["dtype"], r["op"]): (r["route"], r["result"]) for r in rows}
        self.assertEqual(routes[("all_reduce", "fp32", "sum")], ("native", "pass"))
        self.assertEqual(routes[("reduce_scatter (in place)", "fp32", "sum")], ("native", "pass"))
        self.assertEqual(routes[("all_gather", "bf16", "")], ("emulated (moved as uint16)", "pass"))
        # The local reductions are not emulated on device memory: reported, not skipped.
        self.assertEqual(routes[("all_reduce", "bf16", "max")], ("missing", "unsupported"))
        self.assertEqual(routes[("send/recv (ring)", "fp32", "")], ("native", "pass"))
        self.assertEqual(routes[("all_to_all", "fp32", "")], ("native", "pass"))
        self.assertEqual(routes[("split + all_reduce", "fp32", "sum")], ("native", "pass"))
        return result

    def test_every_collective_passes_on_2_ranks(self):
        self.run_checks(2)

    def test_every_collective_passes_on_4_ranks(self):
        self.run_checks(4)


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class BadInput(unittest.TestCase):
    def refused(self, command, *expected):
        result = mpirun(2, command, timeout=120)
        self.assertEqual(result.returncode, 2, result.stdout[-2000:] + result.stderr)
        self.assertNotIn("Segmentation", result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        self.assertEqual(len(errors), 1, result.stderr)
        for text in expected:
            self.assertIn(text, errors[0])
        return errors[0]

    def train_command(self, *sets):
        command = [tool("qj-train"), "--config", _config, "--set", "train.steps=1"]
        for s in sets:
            command += ["--set", s]
        return command

    def test_with_the_cpu_backend(self):
        self.refused(self.train_command(*DEVICE_CCL), SIMDEV, "takes device memory",
                     "backend.device='cpu'", "device plugin backend")

    def test_with_a_cpu_stage_among_simdev_stages(self):
        self.refused(self.train_command(*DEVICE_CCL, "parallel.pp=2",
                                        'parallel.stage_backends=["cpu","plugin:%s"]' % SIMDEV),
                     SIMDEV, "takes device memory", "parallel.stage_backends mixes 'cpu'")

    def test_with_every_stage_on_the_host(self):
        self.refused(self.train_command(*DEVICE_CCL, "parallel.pp=2",
                                        'parallel.stage_backends=["cpu","cpu"]'),
                     "parallel.stage_backends='cpu'", "device plugin backend")

    def test_a_plugin_of_another_device(self):
        # libqj_test_ccl_owned.so (ABI 1.1) declares device plugin "othersim".
        self.refused(self.train_command("backend.collectives=plugin:" + test_ccl("owned"),
                                        *ON_SIMDEV),
                     test_ccl("owned"), "of device plugin 'othersim'", "loads device plugin 'simdev'")

    def test_a_1_0_device_memory_plugin_is_checked_by_memory_only(self):
        # No device_plugin field in 1.0: refused on the cpu backend as any
        # device-memory plugin, and on simdev it gets past that check (its
        # table runs no collective: refused for that instead).
        self.refused(self.train_command("backend.collectives=plugin:" + test_ccl("minor0")),
                     test_ccl("minor0"), "takes device memory", "backend.device='cpu'")
        self.refused(self.train_command("backend.collectives=plugin:" + test_ccl("minor0"),
                                        *ON_SIMDEV),
                     test_ccl("minor0"), "lacks collectives this run needs")

    def test_bf16_training_needs_the_bf16_max_simdev_lacks(self):
        # simdev's collectives lack bf16 max; the host's emulation (all_gather +
        # local max) would read device memory, so it is missing, and said so.
        self.refused(self.train_command(*ON_SIMDEV, *DEVICE_CCL, "train.precision=bf16"),
                     SIMDEV, "lacks collectives this run needs",
                     "all_reduce bf16 max (not emulated on device memory)")

    def test_backend_test_without_a_device_plugin(self):
        self.refused([tool("qj-backend-test"), "--collective-plugin", test_ccl("owned")],
                     test_ccl("owned"), "takes device memory", "does not load")


if __name__ == "__main__":
    unittest.main()
