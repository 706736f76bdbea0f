"""Failures on some or all of 4 ranks end the run quickly, with one clear error
line: set-up errors exit 2 and are printed once; a rank failing mid-run tears
the others down (MPI_Abort) instead of leaving them blocked in a collective."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from qj_paths import tool

TOOL = tool("qj-rank-failure-tool")
MPIRUN = shutil.which("mpirun")
TIME_LIMIT_S = 20


def launch(mode, ranks=None, **extra_env):
    """Runs the tool under mpirun with `ranks` processes (or alone if None)."""
    env = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1", OMP_NUM_THREADS="1", **extra_env)
    command = [TOOL, mode]
    if ranks is not None:
        command = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(ranks)] + command
    # In a scratch folder: a watchdog that ends the run writes flight recorders there.
    with tempfile.TemporaryDirectory() as scratch:
        return subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=TIME_LIMIT_S, cwd=scratch)


@unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
class RankFailures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(TOOL):
            raise AssertionError(TOOL + " is missing: build the target qj-rank-failure-tool")

    def error_lines(self, stderr):
        return [line for line in stderr.splitlines() if line.startswith("error:")]

    def test_every_rank_failing_setup_prints_the_error_once_and_exits_2(self):
        result = launch("setup-all", 4)
        message = "config: model.layers must be positive, got 0"
        self.assertEqual(result.returncode, 2, msg=result.stderr)
        self.assertEqual(result.stderr.count(message), 1, msg=result.stderr)
        self.assertEqual(self.error_lines(result.stderr), ["error: " + message])

    def test_one_rank_failing_setup_names_it_once_and_all_exit_2(self):
        result = launch("setup-one", 4)
        message = "plan: rank 2 cannot open the data shard"
        self.assertEqual(result.returncode, 2, msg=result.stderr)
        self.assertEqual(result.stderr.count(message), 1, msg=result.stderr)
        self.assertEqual(self.error_lines(result.stderr), ["error: rank 2: " + message])

    def test_one_rank_failing_midrun_aborts_the_others(self):
        result = launch("midrun", 4)
        self.assertNotEqual(result.returncode, 0, msg=result.stderr)
        self.assertIn("error: rank 2: step 3: loss is NaN", result.stderr)
        self.assertEqual(len(self.error_lines(result.stderr)), 1, msg=result.stderr)

    def test_a_transports_asynchronous_error_ends_the_run_and_aborts_every_transport(self):
        # The watchdog polls each watched group's transport (NCCL's
        # ncclCommGetAsyncError); rank 2's reports an error after a second.
        started = time.monotonic()
        result = launch("transport-error", 4)
        self.assertNotEqual(result.returncode, 0, msg=result.stderr)
        self.assertLess(time.monotonic() - started, TIME_LIMIT_S)
        self.assertIn("stand-in transport: rank 2 lost its link", result.stderr)
        self.assertIn("error: rank 2:", result.stderr)
        self.assertIn("rank 2: transport aborted", result.stderr)

    def test_a_rank_hung_before_an_all_to_all_is_named_as_behind(self):
        started = time.monotonic()
        result = launch("all-to-all", 4, QJ_COMM_FAULT="action=hang,rank=2,op=all_to_all,seq=5")
        self.assertNotEqual(result.returncode, 0, msg=result.stderr)
        self.assertLess(time.monotonic() - started, TIME_LIMIT_S)
        self.assertIn("all_to_all", result.stderr)
        self.assertIn("passed its deadline", result.stderr)
        self.assertIn("rank(s) behind: 2", result.stderr)
        whole = launch("all-to-all", 4)  # the same calls without the fault
        self.assertEqual(whole.returncode, 0, msg=whole.stderr)
        self.assertEqual(whole.stdout.strip(), "all_to_all: 3 from rank 3")

    def test_no_failure_exits_0(self):
        result = launch("ok", 4)
        self.assertEqual(result.returncode, 0, msg=result.stderr)
        self.assertEqual(result.stdout.strip(), "ranks: 4")
        self.assertEqual(self.error_lines(result.stderr), [])

    def test_without_mpirun_the_world_is_one_rank(self):
        ok = launch("ok")
        self.assertEqual(ok.returncode, 0, msg=ok.stderr)
        self.assertEqual(ok.stdout.strip(), "ranks: 1")
        failed = launch("setup-all")
        self.assertEqual(failed.returncode, 2, msg=failed.stderr)
        self.assertEqual(self.error_lines(failed.stderr),
                         ["error: config: model.layers must be positive, got 0"])
        midrun = launch("midrun")  # rank 2 does not exist: the lone rank's all_reduce succeeds
        self.assertEqual(midrun.returncode, 0, msg=midrun.stderr)


if __name__ == "__main__":
    unittest.main()
