"""Ctrl-C while Python drives training: SIGINT lets the step in progress
finish, then KeyboardInterrupt is raised at the step boundary (no hang, no
crash); under mpirun, a SIGINT to one rank or to mpirun ends every rank."""
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import unittest

from qj_paths import SOURCE_DIR, TIMEOUT_SCALE
from qj_python import ENV, HAVE_MODULE, MPIRUN, PYTHON, mpirun

# Trains a long run, saying when each step is done; catches KeyboardInterrupt
# only when asked to, and then reports where training stopped.
SCRIPT = textwrap.dedent("""
    import os, sys
    import qianjun as qj
    cfg = qj.Config.load("configs/synthetic.json")
    cfg["train.steps"] = 100000
    cfg["train.log_every"] = 100000
    cfg["train.eval_every"] = 0
    # The metrics, and the flight recorders of a run ended by the watchdog, go to the test's folder.
    t = qj.Trainer(cfg, metrics_jsonl=os.path.join(sys.argv[2], "metrics.jsonl"))
    with open(os.path.join(sys.argv[2], "pid{}".format(t.rank)), "w") as f:
        f.write(str(os.getpid()))
    try:
        for m in t.train():
            if t.rank == 0:
                print("done {}".format(m["step"]), flush=True)
    except KeyboardInterrupt:
        if sys.argv[1] == "catch":
            print("interrupted {}".format(t.steps_done), flush=True)
            sys.exit(0)
        raise
""")


def wait_for(process, prefix, count=1):
    """Lines of stdout until `count` lines start with `prefix` (those lines)."""
    found = []
    deadline = time.monotonic() + 120 * TIMEOUT_SCALE
    while len(found) < count and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            found.append(line.split())
    return found


@unittest.skipUnless(HAVE_MODULE, "the Python module is not built")
class Interrupt(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qj_interrupt_")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def pids(self, ranks):
        pids = {}
        for rank in range(ranks):
            with open(os.path.join(self.tmp, "pid{}".format(rank))) as f:
                pids[rank] = int(f.read())
        return pids

    def start(self, launcher, mode):
        return subprocess.Popen(launcher + [PYTHON, "-c", SCRIPT, mode, self.tmp], cwd=SOURCE_DIR,
                                env=dict(ENV, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def finish(self, process, seconds=60):
        try:
            out, err = process.communicate(timeout=seconds * TIMEOUT_SCALE)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            self.fail("still running {} s after the signal:\n{}{}".format(seconds, out, err))
        return process.returncode, out, err

    def test_one_process_stops_at_the_step_boundary(self):
        process = self.start([], "catch")
        self.assertTrue(wait_for(process, "done", 2))
        process.send_signal(signal.SIGINT)
        code, out, err = self.finish(process)
        self.assertEqual(code, 0, out + err)
        steps = [int(line.split()[1]) for line in out.splitlines() if line.startswith("done")]
        stopped = [int(line.split()[1]) for line in out.splitlines() if line.startswith("interrupted")]
        self.assertEqual(len(stopped), 1, out + err)
        # The step in progress completed: the trainer is exactly after a step.
        self.assertIn(stopped[0], (steps[-1] if steps else 2, (steps[-1] if steps else 2) + 1))
        self.assertLess(stopped[0], 100000)

    def test_uncaught_interrupt_exits_like_python(self):
        process = self.start([], "raise")
        self.assertTrue(wait_for(process, "done"))
        process.send_signal(signal.SIGINT)
        code, out, err = self.finish(process)
        self.assertNotEqual(code, 0)
        self.assertIn("KeyboardInterrupt", err)
        self.assertNotIn("Segmentation", err)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_sigint_to_one_rank_ends_every_rank(self):
        process = self.start(mpirun(2), "raise")
        self.assertTrue(wait_for(process, "done"))
        pids = self.pids(2)
        os.kill(pids[1], signal.SIGINT)
        code, out, err = self.finish(process, 120)
        self.assertNotEqual(code, 0)
        self.assertIn("KeyboardInterrupt", err)
        # The watchdog's hub names the rank and why, and ends the job in order:
        # every rank's flight recorder is written (beside its metrics, not in
        # the working directory) before any rank exits.
        self.assertIn("error: watchdog: rank 1 stopped out of step with the others: its Python "
                      "program ended on an uncaught exception", err)
        for rank in (0, 1):
            path = os.path.join(self.tmp, "flight_recorder_rank%05d.jsonl" % rank)
            self.assertTrue(os.path.exists(path), err)
        for pid in pids.values():
            self.assertFalse(alive(pid), "rank pid %d lives" % pid)

    @unittest.skipIf(MPIRUN is None, "mpirun is not on PATH")
    def test_sigint_to_mpirun_ends_every_rank(self):
        process = self.start(mpirun(2), "raise")
        self.assertTrue(wait_for(process, "done"))
        pids = list(self.pids(2).values())
        process.send_signal(signal.SIGINT)
        code, out, err = self.finish(process, 120)
        self.assertNotEqual(code, 0)
        for pid in pids:
            self.assertFalse(alive(pid), "rank pid %d lives" % pid)


def alive(pid, grace_s=10.0):
    """Whether the process still runs `grace_s` after being asked: mpirun may
    return while a rank it killed is still on its way out."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            with open("/proc/{}/stat".format(pid)) as f:
                running = f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            running = False
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


if __name__ == "__main__":
    unittest.main()
