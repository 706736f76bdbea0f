#!/usr/bin/python3
"""Checkpoint save, load and training stall of qj-train against the raw disk.

On the disk of --dir (default: a temporary folder under the build folder, so the
disk the build lives on), for a model whose optimizer state is big enough that
disk time dominates (default: gpt2 preset, 8 layers, hidden 512, 8 heads,
vocabulary 50304: 51M parameters, 584 MiB of weights and Adam moments):

  1. raw disk: a sequential write of one checkpoint's byte count in 8 MiB blocks
     of random bytes, fsync included, then a sequential read of it after
     posix_fadvise(DONTNEED) drops it from the page cache (fincore tells whether
     that worked: the read is reported cold or warm);
  2. save: bytes / seconds of the trainer's own "saved checkpoint" lines
     (synchronous saves), one process and dp=2 on 2 ranks (per rank and total),
     against the raw write;
  3. load: a resume that runs no step (train.steps = the saved step, from the
     same checkpoint.dir, so no final save either): the load time the trainer
     logs ("resumed from ...; read X in S s"; a resume skips the weight
     initialisation, so start-up times cannot be compared); the
     shard files are dropped from the page cache first (cold), then the resume
     is repeated with them cached (warm: hashing and scattering alone);
  4. stall: three runs of the same steps, without saves, with synchronous saves
     and with checkpoint.async=true. Every stdout line is time-stamped on
     arrival; the window runs from the line of step 1 (warm-up) to the line of
     the last step, which comes before the final save, so it holds the
     periodic saves before the last one. stall = (window with saves - window
     without) / saves in the window: it counts the blocking part of a save and,
     for async, the slowdown of the steps that run beside the writer thread.
     "boundary" stalls are measured inside one run: the gap between the lines
     of the steps around a save less the next step's own "ms" (from the metrics
     JSONL), less the median gap excess at boundaries without a save.

    /usr/bin/python3 benchmarks/checkpoint_bench.py [--dir DIR] [--layers 8]
        [--hidden 512] [--heads 8] [--vocab 50304] [--seq-len 32] [--every 8]
        [--saves 2] [--no-dp] [--keep-files] [--out FILE]

Builds nothing: needs qj-train and qj-make-corpus in the build folder (env
QJ_BUILD_DIR, default build) and mpirun on PATH for the dp=2 case. Writes
benchmarks/results/checkpoint_bench.json and prints the short table last.

Reading the numbers on a small shared machine: every step, save and load here
runs on the same few cores as anything else on the machine (a compiler, other
jobs); the JSON records the 1-minute load average before and after each run.
Wall-time differences between runs carry that noise: the window stall of the
async run can come out negative or well above its boundary stall when the
machine was busier in one run than the other. The async writer thread hashes
(SHA-256) and writes on a core the training step also uses, so on 2 cores part
of its time shows up as slower steps, not as a boundary stall. "cold" means
not in this kernel's page cache; on a virtual machine the host may still cache
the disk, so a cold read can run at memory speed (the raw read then says more
about the host than about the disk).
"""
import argparse
import glob
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = 8 << 20
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
READ = re.compile(r"read \S+ \w+ in ([\d.]+) s")
SAVED = re.compile(r"saved checkpoint of step (\d+) to (\S+) \(([\d.]+) (\w+) in ([\d.]+) s, ([\d.]+) MB/s")
STEP = re.compile(r"^step\s+(\d+)/(\d+) \|")


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def machine(dir_):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    df = subprocess.run(["df", "-T", dir_], capture_output=True, text=True).stdout.splitlines()
    fields = df[-1].split() if len(df) > 1 else ["?", "?"]
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "dir": dir_, "device": fields[0], "filesystem": fields[1]}


def resident_bytes(paths):
    """Bytes of `paths` in the page cache (fincore), or None where it cannot tell."""
    if not paths or not shutil.which("fincore"):
        return None
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", *paths],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return sum(int(x) for x in out.stdout.split())


def drop_cache(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_disk(dir_, nbytes):
    """dd-like sequential write (fsync included) and read of nbytes; MB/s of each."""
    path = os.path.join(dir_, "raw_disk.bin")
    block = bytearray(os.urandom(BLOCK))
    left, blocks = nbytes, 0
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while left > 0:
            block[:8] = blocks.to_bytes(8, "little")  # every block differs
            view = memoryview(block)[:min(left, BLOCK)]
            while view:
                view = view[os.write(fd, view):]
            left -= min(left, BLOCK)
            blocks += 1
        os.fsync(fd)
    finally:
        os.close(fd)
    write_s = time.perf_counter() - start
    drop_cache([path])
    resident = resident_bytes([path])
    buf = bytearray(BLOCK)
    got = 0
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            n = os.readv(fd, [buf])
            if n == 0:
                break
            got += n
    finally:
        os.close(fd)
    read_s = time.perf_counter() - start
    os.remove(path)
    cold = None if resident is None else resident < 0.05 * nbytes
    return {"bytes": nbytes, "write_s": write_s, "write_MBps": nbytes / 1e6 / write_s,
            "read_s": read_s, "read_MBps": got / 1e6 / read_s,
            "read_resident_before_bytes": resident,
            "read_cache": "unknown" if cold is None else ("cold" if cold else "warm")}


class Trainer:
    def __init__(self, build, config, work):
        self.build, self.config, self.work = build, config, work
        self.runs = {}

    def run(self, name, sets, ranks=1, threads=None, limit=600):
        """One qj-train process (or mpirun of `ranks`); every stdout line time-stamped."""
        jsonl = os.path.join(self.work, name + ".jsonl")
        args = [os.path.join(self.build, "qj-train"), "--config", self.config, "--metrics-jsonl", jsonl]
        for s in sets:
            args += ["--set", s]
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        if ranks > 1:
            env["OMPI_MCA_mpi_yield_when_idle"] = "1"
            args = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                    "-np", str(ranks)] + args
        load_before = load_average()
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines = []
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
        rc = proc.wait(timeout=limit)
        wall = time.perf_counter() - start
        if rc != 0:
            sys.stdout.write("\n".join(l for _, l in lines[-30:]) + "\n")
            sys.exit(f"checkpoint_bench: {name} failed (exit {rc})")
        r = {"name": name, "sets": sets, "ranks": ranks, "wall_s": wall, "lines": lines,
             "load_before": load_before, "load_after": load_average(),
             "step_t": {}, "saves": [], "ms": {}, "model_t": None}
        for t, line in lines:
            if (m := STEP.match(line)):
                r["step_t"][int(m.group(1))] = t
            elif (m := SAVED.search(line)):
                r["saves"].append({"step": int(m.group(1)), "path": m.group(2),
                                   "bytes": round(float(m.group(3)) * UNITS[m.group(4)]),
                                   "seconds": float(m.group(5)), "at_s": t,
                                   "background": "written in the background" in line})
            elif line.startswith("model:") and r["model_t"] is None:
                r["model_t"] = t
            elif line.startswith("resumed from"):
                r["resumed"] = line
        if os.path.exists(jsonl):
            with open(jsonl) as f:
                for l in f:
                    rec = json.loads(l)
                    if "ms" in rec:
                        r["ms"][rec["step"]] = rec["ms"] / 1e3
        print(f"   {wall:.1f} s wall, load {load_before:.1f} -> {r['load_after']:.1f}, "
              f"{len(r['saves'])} saves", flush=True)
        self.runs[name] = r
        return r


def window(r, first, last):
    return r["step_t"][last] - r["step_t"][first]


def boundary_stalls(r, first, last, save_steps):
    """Per save in (first, last): line gap after the save step less the next step's
    ms, less the median of that excess at boundaries without a save."""
    excess = {s: r["step_t"][s + 1] - r["step_t"][s] - r["ms"][s + 1] for s in range(first, last)}
    quiet = [e for s, e in excess.items() if s not in save_steps]
    base = statistics.median(quiet) if quiet else 0.0
    return [excess[s] - base for s in save_steps], base


def shard_sizes(step_dir):
    return {os.path.basename(p): os.path.getsize(p) for p in sorted(glob.glob(os.path.join(step_dir, "rank_*.bin")))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="where checkpoints and the raw file go (default: a temp dir under the build folder)")
    ap.add_argument("--build", default=os.environ.get("QJ_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--seq-len", type=int, default=32, help="short: the state size, not the step, is measured")
    ap.add_argument("--batch", type=int, default=1, help="global batch (sequences per step)")
    ap.add_argument("--every", type=int, default=8, help="steps between saves in the stall runs")
    ap.add_argument("--saves", type=int, default=2, help="saves inside the timed window of the stall runs")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-dp", action="store_true", help="skip the dp=2 save")
    ap.add_argument("--keep-files", action="store_true", help="leave the checkpoints in the work dir")
    ap.add_argument("--out", help="result JSON (default benchmarks/results/checkpoint_bench.json)")
    a = ap.parse_args()
    build = a.build if os.path.isabs(a.build) else os.path.join(ROOT, a.build)
    for tool in ("qj-train", "qj-make-corpus"):
        if not os.access(os.path.join(build, tool), os.X_OK):
            sys.exit(f"checkpoint_bench: {build}/{tool} not found; build it first")
    parent = a.dir or build
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix="checkpoint_bench_", dir=parent)
    started = time.perf_counter()
    try:
        result = bench(a, build, work)
    finally:
        if not a.keep_files:
            shutil.rmtree(work, ignore_errors=True)
    result["bench_wall_s"] = time.perf_counter() - started
    out = a.out or os.path.join(ROOT, "benchmarks", "results", "checkpoint_bench.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print_table(result)
    print(f"(wrote {os.path.relpath(out, ROOT)}; {result['bench_wall_s']:.0f} s)")


def bench(a, build, work):
    corpus = os.path.join(work, "corpus")
    subprocess.run([os.path.join(build, "qj-make-corpus"), "--output", corpus,
                    "--vocab", str(min(a.vocab, 2048)), "--train-tokens", "200000",
                    "--valid-tokens", "20000"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump({"model": {"preset": "gpt2", "layers": a.layers, "hidden": a.hidden, "heads": a.heads,
                             "vocab": a.vocab, "seq_len": a.seq_len},
                   "train": {"global_batch": a.batch, "micro_batch": 1, "lr": 1e-4, "min_lr": 1e-5,
                             "warmup_steps": 1, "eval_every": 0, "log_every": 1},
                   "data": {"train": os.path.join(corpus, "train"), "shuffle": False},
                   "backend": {"device": "cpu"}}, f)
    tr = Trainer(build, config, work)
    result = {"machine": machine(work),
              "model": {"preset": "gpt2", "layers": a.layers, "hidden": a.hidden, "heads": a.heads,
                        "vocab": a.vocab, "seq_len": a.seq_len, "global_batch": a.batch},
              "threads": a.threads}

    # 4 (first the runs): no saves, synchronous saves, async saves; same steps.
    E, n = a.every, a.saves
    T = E * (n + 1)
    save_steps = [E * k for k in range(1, n + 1)]  # inside the window (1, T]
    base = ["train.steps=%d" % T]
    plain = tr.run("no_saves", base, threads=a.threads)
    sync_dir = os.path.join(work, "sync")
    sync = tr.run("sync_saves", base + [f'checkpoint.dir="{sync_dir}"', f"checkpoint.every={E}",
                                        f"checkpoint.keep={n + 1}"], threads=a.threads)
    nbytes = sync["saves"][0]["bytes"]
    last_dir = sync["saves"][-1]["path"]
    shard_bytes = sum(shard_sizes(last_dir).values())

    # 1. raw disk, the byte count of one checkpoint's shards.
    print("== raw disk", flush=True)
    raw = raw_disk(work, shard_bytes)
    print(f"   write {raw['write_MBps']:.0f} MB/s, read {raw['read_MBps']:.0f} MB/s ({raw['read_cache']})", flush=True)
    result["raw_disk"] = raw

    # 3. load: cold resume, warm resume, and a run that loads nothing.
    shards = sorted(glob.glob(os.path.join(last_dir, "*")))
    drop_cache(shards)
    resident = resident_bytes(shards)
    cold = tr.run("resume_cold", [f"train.steps={T}", f'checkpoint.dir="{sync_dir}"'], threads=a.threads)
    warm = tr.run("resume_warm", [f"train.steps={T}", f'checkpoint.dir="{sync_dir}"'], threads=a.threads)
    none = tr.run("load_nothing", ["train.steps=0", "train.warmup_steps=0"], threads=a.threads)
    for r in (cold, warm):
        if f"step {T}," not in r.get("resumed", "") or r["saves"] or r["step_t"]:
            sys.exit(f"checkpoint_bench: {r['name']} did not resume from step {T} without running "
                     f"a step or saving: {r.get('resumed')}")
    load = {"bytes": shard_bytes, "baseline_to_model_line_s": none["model_t"],
            "baseline_wall_s": none["wall_s"]}
    for key, r, res in (("cold", cold, resident), ("warm", warm, None)):
        # The trainer times its own load ("read X in S s"); a resume also skips
        # the weight initialisation, so the start-up difference is not the load.
        m = READ.search(r["resumed"])
        s = float(m.group(1)) if m else r["model_t"] - none["model_t"]
        load[key] = {"to_model_line_s": r["model_t"], "load_s": s, "MBps": shard_bytes / 1e6 / s,
                     "load_s_source": "trainer log" if m else "start-up difference",
                     "wall_s": r["wall_s"], "wall_diff_s": r["wall_s"] - none["wall_s"],
                     "MBps_from_wall": shard_bytes / 1e6 / max(r["wall_s"] - none["wall_s"], 1e-9)}
        if res is not None:
            load[key]["resident_before_bytes"] = res
            load[key]["cache"] = "cold" if res < 0.05 * shard_bytes else "warm"
    load["cold"].setdefault("cache", "unknown")
    load["ratio_cold_to_raw_read"] = load["cold"]["MBps"] / raw["read_MBps"]
    result["load"] = load

    asyn = tr.run("async_saves", base + [f'checkpoint.dir="{os.path.join(work, "async")}"',
                                         f"checkpoint.every={E}", "checkpoint.async=true",
                                         f"checkpoint.keep={n + 1}"], threads=a.threads)

    # 2. save throughput, one process (the synchronous run's saves).
    total_b = sum(s["bytes"] for s in sync["saves"])
    total_s = sum(s["seconds"] for s in sync["saves"])
    save = {"single": {"saves": [{k: s[k] for k in ("step", "bytes", "seconds")} for s in sync["saves"]],
                       "MBps": total_b / 1e6 / total_s,
                       "ratio_to_raw_write": total_b / 1e6 / total_s / raw["write_MBps"]}}
    # ... and dp=2 on 2 ranks (one thread each), one save.
    if not a.no_dp and shutil.which("mpirun"):
        dp = tr.run("dp2_save", ["train.steps=2", "parallel.dp=2", f"train.global_batch={2 * a.batch}", f'checkpoint.dir="{os.path.join(work, "dp2")}"',
                                 "checkpoint.every=2"], ranks=2, threads=1)
        s = dp["saves"][-1]
        sizes = shard_sizes(s["path"])
        save["dp2"] = {"bytes": s["bytes"], "seconds": s["seconds"], "per_rank_bytes": sizes,
                       "total_MBps": s["bytes"] / 1e6 / s["seconds"],
                       "per_rank_MBps": {k: v / 1e6 / s["seconds"] for k, v in sizes.items()},
                       "ratio_to_raw_write": s["bytes"] / 1e6 / s["seconds"] / raw["write_MBps"]}
    result["save"] = save

    # 4. stall.
    w_plain, w_sync, w_async = (window(r, 1, T) for r in (plain, sync, asyn))
    in_window = lambda r: [s for s in r["saves"] if s["step"] in save_steps]
    sync_save_s = statistics.mean(s["seconds"] for s in in_window(sync))
    b_sync, q_sync = boundary_stalls(sync, 1, T, save_steps)
    b_async, q_async = boundary_stalls(asyn, 1, T, save_steps)
    committed = {s["step"]: s["at_s"] for s in asyn["saves"]}
    stall = {"every": E, "steps": T, "save_steps_in_window": save_steps,
             "window_s": {"no_saves": w_plain, "sync": w_sync, "async": w_async},
             "step_ms_median": {r["name"]: 1e3 * statistics.median(r["ms"][k] for k in range(2, T + 1))
                                for r in (plain, sync, asyn)},
             "sync_save_s": sync_save_s,
             "sync_stall_s": (w_sync - w_plain) / n,
             "async_stall_s": (w_async - w_plain) / n,
             "sync_boundary_stall_s": b_sync, "async_boundary_stall_s": b_async,
             "quiet_boundary_excess_s": {"sync": q_sync, "async": q_async},
             "async_saves": [{k: s[k] for k in ("step", "seconds", "at_s")} for s in asyn["saves"]],
             # an async save still in flight at the window's end would hide its wait
             "async_committed_in_window": all(committed.get(s, 1e18) <= asyn["step_t"][T] for s in save_steps)}
    stall["async_stall_fraction_of_sync_save"] = stall["async_stall_s"] / sync_save_s
    stall["async_boundary_fraction_of_sync_save"] = statistics.mean(b_async) / sync_save_s
    result["stall"] = stall
    result["runs"] = {name: {**{k: r[k] for k in ("sets", "ranks", "wall_s", "load_before", "load_after",
                                                  "model_t", "saves")},
                             "step_line_s": r["step_t"], "step_ms": {k: 1e3 * v for k, v in r["ms"].items()}}
                      for name, r in tr.runs.items()}
    return result


def print_table(r):
    raw, save, load, st = r["raw_disk"], r["save"], r["load"], r["stall"]
    m = r["machine"]
    print()
    print(f"checkpoint of {raw['bytes'] / 2**20:.0f} MiB ({r['model']['layers']} layers, hidden "
          f"{r['model']['hidden']}, vocab {r['model']['vocab']}) on {m['filesystem']} ({m['device']}), "
          f"{m['cores']} cores {m['cpu']}")
    rows = [("raw write (fsync)", f"{raw['write_MBps']:.0f} MB/s", ""),
            (f"raw read ({raw['read_cache']})", f"{raw['read_MBps']:.0f} MB/s", ""),
            ("save, 1 process", f"{save['single']['MBps']:.0f} MB/s", f"{save['single']['ratio_to_raw_write']:.2f} of raw write")]
    if "dp2" in save:
        d = save["dp2"]
        per = ", ".join(f"{v:.0f}" for v in d["per_rank_MBps"].values())
        rows.append(("save, dp=2 total", f"{d['total_MBps']:.0f} MB/s",
                     f"{d['ratio_to_raw_write']:.2f} of raw write; per rank {per} MB/s"))
    rows += [(f"load ({load['cold']['cache']})", f"{load['cold']['MBps']:.0f} MB/s",
              f"{load['ratio_cold_to_raw_read']:.2f} of raw read"),
             ("load (warm cache)", f"{load['warm']['MBps']:.0f} MB/s", "hashing + scatter only"),
             ("sync save time", f"{st['sync_save_s']:.2f} s", "per save, from the log"),
             ("sync stall", f"{st['sync_stall_s']:.2f} s",
              f"boundary {statistics.mean(st['sync_boundary_stall_s']):.2f} s"),
             ("async stall", f"{st['async_stall_s']:.2f} s",
              f"{st['async_stall_fraction_of_sync_save']:.2f} of sync save time; boundary "
              f"{statistics.mean(st['async_boundary_stall_s']):.2f} s "
              f"({st['async_boundary_fraction_of_sync_save']:.2f}); target <= 0.10"),
             ("", "", "boundary per save: " + ", ".join(f"{x:.2f}" for x in st["async_boundary_stall_s"])
              + " s (sync " + ", ".join(f"{x:.2f}" for x in st["sync_boundary_stall_s"]) + " s)")]
    for name, value, note in rows:
        print(f"{name:<22}{value:>12}   {note}")
    print(f"stall: per save, over {len(st['save_steps_in_window'])} saves every {st['every']} steps; median step "
          + ", ".join(f"{k} {v:.0f} ms" for k, v in st["step_ms_median"].items()))


if __name__ == "__main__":
    main()
