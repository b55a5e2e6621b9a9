"""Figures: timing a program, percentiles, a process's memory and CPU, the machine, and
how a figure is shown beside its target."""

import math
import os
import resource
import shlex
import sys
import time


# --------------------------------------------------------------------------------------
# Timing.

def spawn_wait(argv, stdout_path):
    """Runs argv with stdout to a file; returns (wall seconds, exit code, maxrss KiB).
    The rusage comes from wait4 on this very child, as /usr/bin/time -v does."""
    fa = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
          (os.POSIX_SPAWN_OPEN, 1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
           0o600)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    return wall, os.waitstatus_to_exitcode(status), ru.ru_maxrss


def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(p / 100 * len(sorted_vals)))
    return sorted_vals[k - 1]


# --------------------------------------------------------------------------------------
# A process: memory, CPU, wake-ups.

def read_status(pid):
    """VmRSS and VmHWM of a process, in KiB (missing if it is gone)."""
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS"):
                    vals[k] = int(v.split()[0])
    except OSError:
        pass
    return vals


def cpu_ticks(pid):
    """(utime + stime, cutime + cstime) of the whole process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def ctx_switches(pid):
    """Context switches of all the process's threads (each one a wake-up or preemption)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches",
                                        "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
    except OSError:
        pass
    return total


def cpu_account():
    """(CPU seconds the whole machine has been busy, CPU seconds used by this process and
    the children it waited for, which include every daemon and driver of the run)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    ours = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    return busy, ours


# --------------------------------------------------------------------------------------
# Showing figures.

def mib(kb):
    return "n/a" if not kb else f"{kb / 1024:.1f} MiB"


def verdict(ok):
    return "PASS" if ok else "MISS"


class Report:
    """What the report's end lists: PROBLEM (pyfilter misbehaved or a measurement could
    not run: exit 1), MISSED (a target missed: exit 3), WARNING (neither)."""

    def __init__(self):
        self.problems, self.misses, self.warnings = [], [], []


def machine(usable=False):
    """(CPU model, cores, RAM) as the report's header shows them."""
    model, physical, phys_id = "?", set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and model == "?":
                    model = v
                elif k == "physical id":
                    phys_id = v
                elif k == "core id":
                    physical.add((phys_id, v))
    except OSError:
        pass
    ram = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    except OSError:
        pass
    cores = f"{os.cpu_count()} logical CPUs"
    if physical:
        cores += f" ({len(physical)} physical cores)"
    if usable:
        try:
            cores += f", {len(os.sched_getaffinity(0))} usable"
        except (AttributeError, OSError):
            pass
    return model, cores, ram


def command_line():
    """The command as run, with the PYFILTER_BENCH_* variables set for it."""
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
           if k.startswith("PYFILTER_BENCH_")]
    return " ".join(env + [shlex.quote(a) for a in [sys.argv[0]] + sys.argv[1:]])
