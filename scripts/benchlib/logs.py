"""Log lines and writers: sshd `Failed password` lines stamped like syslog, appending to
a log as a writer would, and the big replicated sshd log of the scan benchmarks."""

import hashlib
import json
import math
import os
import re
import time

from .base import REPO, BenchError, note

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def syslog_now():
    t = time.localtime()
    return f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def fail_line(ip, n, stamp=None):
    """One sshd `Failed password` line for `ip` (n varies the PID and port), stamped now
    unless `stamp` is given."""
    return (f"{stamp or syslog_now()} benchhost sshd[{20000 + n % 40000}]: Failed password "
            f"for root from {ip} port {40000 + n % 20000} ssh2\n")


def append(fd, data):
    """Writes all of `data` to `fd` (opened O_APPEND: each write lands at the end)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Appender:
    """A log a writer appends to: `with Appender(path) as log: log.write(bytes)`.
    The file is created (empty) unless it is there."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def write(self, data):
        append(self.fd, data)

    def __exit__(self, *exc):
        os.close(self.fd)
        self.fd = None


def empty_log(path):
    """Creates `path` (and its directory) as an empty log."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()
    return path


# --------------------------------------------------------------------------------------
# The big log: a sample replicated to a million lines, many distinct addresses.

TARGET_LINES = 1_000_000
GEN_VERSION = 1
IPV4 = re.compile(rb"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def big_sshd_log(run):
    """The million-line sshd log, target/bench/openssh-1m.log, built (or checked) once a
    run: run.big_log = {path, lines, copies, distinct, cached, source, size}."""
    if getattr(run, "big_log", None) is None:
        source = os.environ.get("PYFILTER_BENCH_SOURCE") or os.path.normpath(
            os.path.join(REPO, "..", "shared", "data", "loghub-openssh-2k.log"))
        cache = os.path.join(REPO, "target", "bench")
        os.makedirs(cache, exist_ok=True)
        note(f"log: building/checking {os.path.relpath(cache, REPO)}/openssh-1m.log")
        path, lines, copies, distinct, cached = build_log(
            source, os.path.join(cache, "openssh-1m.log"))
        chown_to_invoker(cache, path, path + ".meta")
        run.big_log = {"path": path, "lines": lines, "copies": copies, "distinct": distinct,
                       "cached": cached, "source": source, "size": os.path.getsize(path)}
    return run.big_log


def build_log(source, dest):
    """Writes the replicated log to `dest` (atomically) unless an up-to-date copy is there.
    Returns (path, lines, copies, distinct IPv4 addresses, cached?)."""
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BenchError(f"sample log {source}: {e.strerror} "
                         "(set PYFILTER_BENCH_SOURCE to another copy)")
    if not data:
        raise BenchError(f"sample log {source} is empty")
    if not data.endswith(b"\n"):
        data += b"\n"
    src_lines = data.count(b"\n")
    copies = max(1, math.ceil(TARGET_LINES / src_lines))
    if copies > 60000:
        raise BenchError(f"sample log {source} has only {src_lines} lines")
    digest = hashlib.sha256(data).hexdigest()
    meta = {"version": GEN_VERSION, "source_sha256": digest, "copies": copies,
            "lines": src_lines * copies}
    meta_path = dest + ".meta"
    try:
        with open(meta_path) as f:
            old = json.load(f)
        if (old.get("meta") == meta and os.path.getsize(dest) == old.get("size")):
            return dest, meta["lines"], copies, old.get("distinct", 0), True
    except (OSError, ValueError):
        pass

    # Template: text pieces and the last two octets of each address, which are kept;
    # the first two come from the copy number (11.0.x.y, 11.1.x.y, ..., 12.243.x.y).
    pieces, tails, pos = [], [], 0
    for m in IPV4.finditer(data):
        octets = [int(g) for g in m.groups()]
        if max(octets) > 255:
            continue
        pieces.append(data[pos:m.start()])
        tails.append(b".%d.%d" % (octets[2], octets[3]))
        pos = m.end()
    pieces.append(data[pos:])
    distinct_tails = len(set(tails))
    tmp = dest + ".tmp"
    with open(tmp, "wb") as out:
        for k in range(copies):
            head = b"%d.%d" % (11 + k // 256, k % 256)
            chunk = [pieces[0]]
            for i, tail in enumerate(tails):
                chunk.append(head)
                chunk.append(tail)
                chunk.append(pieces[i + 1])
            out.write(b"".join(chunk))
    os.replace(tmp, dest)
    distinct = distinct_tails * copies
    with open(meta_path, "w") as f:
        json.dump({"meta": meta, "size": os.path.getsize(dest), "distinct": distinct}, f)
    return dest, meta["lines"], copies, distinct, False


def chown_to_invoker(*paths):
    """Under sudo, leave cache files owned by the user who ran sudo."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid:
        return
    for p in paths:
        try:
            os.chown(p, int(uid), int(gid))
        except OSError:
            pass
