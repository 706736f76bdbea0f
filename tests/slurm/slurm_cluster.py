"""A throw-away single-node Slurm cluster on this machine, for tests.

Everything lives in one temporary folder: a fresh munge key and munged on its
own socket, a generated slurm.conf (this host as the only node, its CPUs, two
free TCP ports), slurmctld and slurmd in the foreground as children of this
process, their state, spool and logs. Nothing outside the folder is read or
written (SLURM_CONF points every Slurm command at the generated file), and
stop() ends the three daemons this object started, by their process ids.
Needs Debian's slurm-wlm and munge, and root (slurmd runs jobs as their user).
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")


def missing_programs():
    return [p for p in DAEMONS if shutil.which(p) is None and not os.path.exists("/usr/sbin/" + p)]


def program(name):
    return shutil.which(name) or "/usr/sbin/" + name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024 // 2
    return 1024


class SlurmCluster:
    def __init__(self, cpus=None):
        self.dir = tempfile.mkdtemp(prefix="qj_slurm_")
        os.chmod(self.dir, 0o700)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count()
        self.processes = []
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.socket = os.path.join(self.dir, "munge.socket")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self, timeout=60):
        self._start_munge()
        self._write_conf()
        for d in ("state", "spool"):
            os.makedirs(self.path(d), exist_ok=True)
        self._spawn([program("slurmctld"), "-D", "-i", "-f", self.conf], "slurmctld.out")
        self._spawn([program("slurmd"), "-D", "-f", self.conf, "-N", self.host], "slurmd.out")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mix", "alloc"):
                return
            for p in self.processes:
                if p.poll() is not None:
                    raise RuntimeError("{} exited with {}:\n{}".format(p.args[0], p.returncode, self.logs()))
            time.sleep(0.5)
        raise RuntimeError("the node did not become idle in {} s:\n{}".format(timeout, self.logs()))

    def sbatch_wait(self, args, cwd, timeout=600):
        """Runs `sbatch --wait ARGS` from cwd; returns the CompletedProcess."""
        return subprocess.run(["sbatch", "--wait"] + list(args), cwd=cwd, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def stop(self):
        for p in reversed(self.processes):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.processes = []

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        text = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            try:
                with open(self.path(name), errors="replace") as f:
                    text.append("--- {}\n{}".format(name, "".join(f.readlines()[-30:])))
            except OSError:
                pass
        return "\n".join(text)

    def _spawn(self, command, output):
        with open(self.path(output), "w") as out:
            self.processes.append(subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT))

    def _start_munge(self):
        key = self.path("munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self._spawn([program("munged"), "-F", "--force", "--socket=" + self.socket, "--key-file=" + key,
                     "--pid-file=" + self.path("munged.pid"), "--log-file=" + self.path("munged.log"),
                     "--seed-file=" + self.path("munged.seed")], "munged.out")
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.processes[-1].poll() is not None:
                raise RuntimeError("munged did not start:\n" + self.logs())
            time.sleep(0.1)

    def _write_conf(self):
        lines = [
            "ClusterName=qjtest",
            "SlurmctldHost={}(127.0.0.1)".format(self.host),
            "SlurmctldPort={}".format(free_port()),
            "SlurmdPort={}".format(free_port()),
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "AuthInfo=socket=" + self.socket,
            "CredType=cred/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            # The node may offer more CPUs than it has (ranks then share cores, as
            # mpirun --oversubscribe lets them).
            "SlurmdParameters=config_overrides",
            "StateSaveLocation=" + self.path("state"),
            "SlurmdSpoolDir=" + self.path("spool"),
            "SlurmctldPidFile=" + self.path("slurmctld.pid"),
            "SlurmdPidFile=" + self.path("slurmd.pid"),
            "SlurmctldLogFile=" + self.path("slurmctld.log"),
            "SlurmdLogFile=" + self.path("slurmd.log"),
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "NodeName={} NodeAddr=127.0.0.1 CPUs={} RealMemory={} State=UNKNOWN".format(
                self.host, self.cpus, memory_mb()),
            "PartitionName=debug Nodes={} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4".format(
                self.host),
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
