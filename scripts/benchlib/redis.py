"""A redis-server of the run's own: a unix socket (mode 700) in a private directory, no
TCP port, no persistence; and RESP for `redis-cli --pipe`."""

import os
import re
import subprocess
import time

from .base import BenchError, clock
from .procs import STARTED, spawn, stop_child


class Redis:
    def __init__(self, directory):
        self.dir = directory
        self.sock = os.path.join(directory, "redis.sock")
        if len(self.sock.encode()) > 100:
            raise BenchError(f"unix socket path too long: {self.sock} (set TMPDIR shorter)")
        with open(os.path.join(directory, "redis.out"), "w") as out:
            self.proc = spawn(
                ["redis-server", "--port", "0", "--unixsocket", self.sock,
                 "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                 "--dir", directory], stdout=out, stderr=subprocess.STDOUT)
        deadline = clock() + 10
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"redis-server exited {self.proc.returncode}: "
                                 + self._out_tail())
            if os.path.exists(self.sock):
                try:
                    if self.cli("PING", timeout=5).strip() == "PONG":
                        break
                except (BenchError, subprocess.SubprocessError):
                    pass  # not answering yet
            if clock() > deadline:
                raise BenchError("redis-server did not answer PING within 10 s: "
                                 + self._out_tail())
            time.sleep(0.05)
        m = re.search(r"redis_version:(\S+)", self.cli("INFO", "server"))
        self.version = m.group(1) if m else "?"

    def _out_tail(self):
        try:
            with open(os.path.join(self.dir, "redis.out")) as f:
                return f.read()[-400:].strip()
        except OSError:
            return ""

    @property
    def url(self):
        return f"redis+unix://{self.sock}"

    def cli(self, *args, timeout=30):
        r = subprocess.run(["redis-cli", "-s", self.sock] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise BenchError(f"redis-cli {' '.join(map(str, args))}: exit {r.returncode}: "
                             f"{r.stderr.strip()}")
        return r.stdout

    def pipe(self, data, timeout=120):
        """`redis-cli --pipe` of RESP-encoded commands; (replies, errors, seconds)."""
        t0 = clock()
        r = subprocess.run(["redis-cli", "-s", self.sock, "--pipe"], input=data,
                           capture_output=True, timeout=timeout)
        took = clock() - t0
        out = r.stdout.decode(errors="replace")
        m = re.search(r"errors: (\d+), replies: (\d+)", out)
        if r.returncode != 0 or not m:
            raise BenchError(f"redis-cli --pipe failed (exit {r.returncode}): "
                             f"{out.strip()[-300:]} {r.stderr.decode(errors='replace')[-300:]}")
        return int(m.group(2)), int(m.group(1)), took

    def stop(self):
        stop_child(self.proc)
        STARTED.forget(self.proc)


def resp(*args):
    """One command in RESP, the protocol `redis-cli --pipe` reads."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)
