"""The watchdog watches collectives that a collective plugin carries
(backend.collectives=plugin:PATH) as it watches MPI's, on 2 ranks under mpirun:
- a plugin all_reduce that hangs inside the plugin (libqj_test_faulty_ccl.so,
  QJ_TEST_CCL_FAULT=hang:all_reduce@1#N) passes parallel.timeout_s: the run
  ends non-zero within a bounded time, the report names the collective, its
  group, the reporting rank and the plugin, the host calls the plugin's abort
  (which releases the hung call), and the flight recorders hold the plugin's
  groups with the pending call; with a device backend (staged through host
  buffers) as well;
- a rank whose training thread stops before a plugin collective
  (QJ_COMM_FAULT) is named as the rank behind, as for MPI;
- the plugin's async_error reporting a failure (QJ_TEST_CCL_FAULT=async:R#N,
  on rank 1, and on rank 0 whose watchdog hub then tells every rank) ends the
  run long before the deadline with an error naming the plugin, the
  group, the rank and the plugin's last_error text, after aborting the call
  blocked in the plugin;
- without a fault the faulty plugin trains like simccl (its cost is measured
  by hand, README, never asserted here: tests assert behaviour, not time).
Every launch has a subprocess time limit, so a regression fails, never hangs."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from qj_paths import BUILD_DIR, TIMEOUT_SCALE, tool

MPIRUN = shutil.which("mpirun")
SIMCCL = os.path.join(BUILD_DIR, "libqj_simccl.so")
FAULTY = os.path.join(BUILD_DIR, "libqj_test_faulty_ccl.so")
CPU_PLUGIN = os.path.join(BUILD_DIR, "libqj_cpu_plugin.so")
ENV = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1")
TIMEOUT_S = 3  # parallel.timeout_s of the hang runs
LIMIT_S = 60 * TIMEOUT_SCALE  # a faulty run must be over within this


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class CclWatchdog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for path in (SIMCCL, FAULTY, CPU_PLUGIN):
            if not os.path.exists(path):
                raise AssertionError(path + " is missing: build qj_simccl, qj_test_faulty_ccl "
                                     "and qj_cpu_plugin")
        cls.tmp = tempfile.mkdtemp(prefix="qj_ccl_watchdog_")
        corpus = os.path.join(cls.tmp, "corpus")
        made = subprocess.run([tool("qj-make-corpus"), "--output", corpus, "--vocab", "97",
                               "--train-tokens", "20000", "--valid-tokens", "2000"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stdout + made.stderr
        config = {"model": {"layers": 2, "hidden": 32, "heads": 4, "vocab": 97, "seq_len": 16},
                  "train": {"steps": 100000, "global_batch": 8, "micro_batch": 2,
                            "warmup_steps": 1, "eval_every": 0, "log_every": 1000},
                  "parallel": {"timeout_s": TIMEOUT_S},
                  "data": {"train": os.path.join(corpus, "train"), "valid": ""},
                  "backend": {"threads": 1}}
        cls.config = os.path.join(cls.tmp, "config.json")
        with open(cls.config, "w") as f:
            json.dump(config, f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def launch(self, name, sets, env=None, limit=LIMIT_S):
        """qj-train on 2 ranks; returns (exit code, output, seconds, its folder)."""
        folder = os.path.join(self.tmp, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "2", tool("qj-train"),
                   "--config", self.config, "--metrics-jsonl", os.path.join(folder, "metrics.jsonl")]
        for s in sets:
            command += ["--set", s]
        started = time.monotonic()
        # In a session of its own, so that a run past its limit is ended whole.
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=dict(ENV, **(env or {})), cwd=folder,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            raise AssertionError("qj-train still running after %d s:\n%s" % (limit, output))
        return proc.returncode, output, time.monotonic() - started, folder

    def assertEndedCleanly(self, code, output):
        self.assertNotEqual(code, 0, output)
        self.assertNotIn("Segmentation", output)
        self.assertNotIn("core dumped", output)

    def recorders(self, folder):
        found = {}
        for rank in (0, 1):
            path = os.path.join(folder, "flight_recorder_rank%05d.jsonl" % rank)
            if os.path.exists(path):
                with open(path) as f:
                    found[rank] = [json.loads(line) for line in f]
        return found

    def check_hang_in_the_plugin(self, name, extra_sets):
        plugin = "plugin:" + FAULTY
        code, output, seconds, folder = self.launch(
            name, ["backend.collectives=" + plugin] + extra_sets,
            env={"QJ_TEST_CCL_FAULT": "hang:all_reduce@1#20"})
        self.assertEndedCleanly(code, output)
        self.assertIn("QJ_TEST_CCL_FAULT: rank 1 hangs in all_reduce", output)
        # The watchdog's diagnosis: the collective, its group, the rank that
        # reports it and the plugin that carries it.
        late = re.search(r"all_reduce(_async)? #\d+ on '(\w+)' \(ranks 0,1\) through collective "
                         r"plugin '([^']+)'.* on rank (\d) passed parallel\.timeout_s", output)
        self.assertIsNotNone(late, output)
        self.assertEqual(late.group(3), FAULTY)
        self.assertIn("transport itself is stuck", output)
        # The host aborted the plugin's communicators: the hung call returned.
        self.assertIn("QJ_TEST_CCL_FAULT: rank 1: all_reduce released by abort", output)
        # Every rank's flight recorder holds the plugin's groups, and rank 1's
        # the all_reduce it was in.
        recorders = self.recorders(folder)
        self.assertEqual(sorted(recorders), [0, 1], output)
        for rank, lines in recorders.items():
            keys = [g["key"] for g in lines[0]["groups"]]
            self.assertIn(late.group(2) + "{0,1}/plugin", keys)
            self.assertIn("world{0,1}", keys)  # the MPI world, apart
        ops = recorders[1][1:]
        hung = [o for o in ops if o["state"] == "pending" and o["op"].startswith("all_reduce")]
        self.assertTrue(hung, recorders[1])
        self.assertEqual(hung[0].get("transport"), "collective plugin '%s'" % FAULTY)
        return seconds

    def test_a_collective_hung_inside_the_plugin_is_named_and_the_plugin_aborted(self):
        seconds = self.check_hang_in_the_plugin("hang", [])
        self.assertLess(seconds, LIMIT_S)

    def test_with_a_device_backend_staged_through_host_buffers_too(self):
        self.check_hang_in_the_plugin("hang_staged", ["backend.device=plugin:" + CPU_PLUGIN])

    def test_a_rank_behind_a_plugin_collective_is_named(self):
        code, output, _, _ = self.launch(
            "behind", ["backend.collectives=plugin:" + FAULTY],
            env={"QJ_COMM_FAULT": "action=hang,rank=1,group=dp,op=all_reduce,seq=10"})
        self.assertEndedCleanly(code, output)
        self.assertIn("QJ_COMM_FAULT: rank 1 hangs", output)
        self.assertRegex(output, r"all_reduce(_async)? #\d+ on 'dp' \(ranks 0,1\) through "
                                 r"collective plugin '%s'.* on rank 0 passed parallel\.timeout_s"
                         % re.escape(FAULTY))
        self.assertIn("rank(s) behind: 1", output)

    def check_async_error(self, rank):
        # A deadline past the launch's limit: only the async_error path can end
        # the run in time (a run past the limit fails the test).
        deadline = int(LIMIT_S * 10)
        code, output, _, folder = self.launch(
            "async%d" % rank,
            ["backend.collectives=plugin:" + FAULTY, "parallel.timeout_s=%d" % deadline],
            env={"QJ_TEST_CCL_FAULT": "async:%d#30" % rank})
        self.assertEndedCleanly(code, output)
        self.assertIn("QJ_TEST_CCL_FAULT: rank %d loses its link" % rank, output)
        self.assertNotIn("passed its deadline", output)
        error = re.search(r"error: rank %d: collective plugin '([^']+)' on '(\w+)' \(rank %d of 2\): "
                          r"asynchronous error: QJ_ERR_DEVICE \(simulated link failure: rank %d "
                          r"lost its link\)" % (rank, rank, rank), output)
        self.assertIsNotNone(error, output)
        self.assertEqual(error.group(1), FAULTY)
        # The abort released the call blocked in the plugin.
        self.assertIn("QJ_TEST_CCL_FAULT: rank %d: all_reduce released by abort" % rank, output)
        self.assertIn(rank, self.recorders(folder), output)
        return output

    def test_an_asynchronous_error_ends_the_run_before_the_deadline(self):
        self.check_async_error(1)

    def test_an_asynchronous_error_on_rank_0_is_reported_by_its_hub_to_every_rank(self):
        output = self.check_async_error(0)
        self.assertRegex(output, r"error: rank 1: rank 0 \(pid \d+ on [^)]+\) ended with an error: "
                                 r"collective plugin '[^']+' on '\w+' \(rank 0 of 2\): asynchronous error")

    def steps(self, folder):
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [r for r in rows if "ms" in r]

    def test_healthy_runs_train_like_simccl(self):
        steps = ["train.steps=40"]
        code, output, _, faulty = self.launch("healthy_faulty",
                                              ["backend.collectives=plugin:" + FAULTY] + steps)
        self.assertEqual(code, 0, output)
        code, output, _, plain = self.launch("healthy_simccl",
                                             ["backend.collectives=plugin:" + SIMCCL] + steps)
        self.assertEqual(code, 0, output)
        # The test plugin without a fault is simccl: the same losses.
        loss = lambda rows: [(r["step"], r["loss"]) for r in rows]
        self.assertEqual(loss(self.steps(faulty)), loss(self.steps(plain)))
        self.assertEqual(len(self.steps(plain)), 40)


if __name__ == "__main__":
    unittest.main()
