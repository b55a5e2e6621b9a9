"""Errors, progress notes, options from the environment, the clock."""

import os
import sys
import time

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(SCRIPTS)

# The program name in progress notes and errors ("bench", "bench-sync", "bench-admin"),
# set by the entry point.
PROG = "bench"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def say(msg=""):
    print(msg, flush=True)


def note(msg):
    """Progress, on stderr so that stdout is only the report."""
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def clock():
    """CLOCK_MONOTONIC: the same clock in every process, so stamps compare across them
    (time.perf_counter is this clock too, on Linux)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def env_int(name, default, lo, hi):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r}: not an integer")
    if not lo <= v <= hi:
        raise BenchError(f"{name}={v}: must be within {lo}..{hi}")
    return v


def ipv4(n):
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
