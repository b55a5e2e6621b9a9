"""The pyfilter binary (built or located), its configurations, and a running pyfilter
whose log is read as it comes."""

import json
import os
import re
import shutil
import subprocess
import threading
import time

from .base import REPO, BenchError, clock, note
from .guard import STAMP as GUARD_STAMP
from .procs import STARTED, spawn, stop_child


# --------------------------------------------------------------------------------------
# The binary.

def find_cargo():
    c = shutil.which("cargo")
    if c:
        return c
    homes = [os.path.expanduser("~")]
    user = os.environ.get("SUDO_USER")
    if user:
        homes.insert(0, os.path.expanduser("~" + user))
    for h in homes:
        p = os.path.join(h, ".cargo", "bin", "cargo")
        if os.access(p, os.X_OK):
            return p
    return None


def build_pyfilter():
    """`cargo build --release` (as the user behind sudo, if any), unless
    PYFILTER_BENCH_BIN or PYFILTER_BENCH_NO_BUILD=1 says otherwise.
    Returns (path of the binary, a note on how it was had)."""
    forced = os.environ.get("PYFILTER_BENCH_BIN")
    if forced:
        if not os.access(forced, os.X_OK):
            raise BenchError(f"PYFILTER_BENCH_BIN={forced}: not an executable")
        return os.path.abspath(forced), "not built (PYFILTER_BENCH_BIN)"
    binary = os.path.join(REPO, "target", "release", "pyfilter")
    if os.environ.get("PYFILTER_BENCH_NO_BUILD") == "1":
        if not os.access(binary, os.X_OK):
            raise BenchError(f"{binary} does not exist and PYFILTER_BENCH_NO_BUILD=1")
        return binary, "not built (PYFILTER_BENCH_NO_BUILD=1)"
    cargo = find_cargo()
    if cargo is None:
        if os.access(binary, os.X_OK):
            note("cargo not found; using the existing target/release/pyfilter")
            return binary, "cargo not found, existing binary used"
        raise BenchError("cargo not found and target/release/pyfilter does not exist")
    cmd = [cargo, "build", "--release", "--quiet"]
    user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and user and user != "root" and shutil.which("sudo"):
        # Build as the invoking user so that target/ does not fill with root's files.
        path = os.path.dirname(cargo) + ":/usr/local/bin:/usr/bin:/bin"
        cmd = ["sudo", "-u", user, "-H", "env", f"PATH={path}"] + cmd
    note("cargo build --release")
    t0 = clock()
    r = subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise BenchError(f"cargo build --release failed (exit {r.returncode}); "
                         "the sources may be mid-edit")
    if not os.access(binary, os.X_OK):
        raise BenchError(f"cargo build succeeded but {binary} is missing")
    return binary, f"cargo build --release ({clock() - t0:.1f} s)"


def version_of(argv):
    """The first line a program prints for --version, or "?"."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except Exception:
        return "?"


# --------------------------------------------------------------------------------------
# Configurations.

def sshd_config(tmp, log_file, backend="iptables", failed_attempts=5, disable=()):
    """tmp/pyfilter.yml with only the sshd rule reading `log_file` (other rules named in
    `disable` are switched off, so that nothing else is followed), SQLite in tmp/db."""
    rules_dir = os.path.join(tmp, "rules.d")  # empty: only the shipped rules
    os.makedirs(rules_dir, exist_ok=True)
    db_dir = os.path.join(tmp, "db")
    os.makedirs(db_dir, exist_ok=True)
    cfg = os.path.join(tmp, "pyfilter.yml")
    lines = [
        "server_name: bench",
        f"rules_dir: {rules_dir}",
        f"firewall: {{ backend: {backend} }}",
        f"sqlite: {{ path: {os.path.join(db_dir, 'pyfilter.db')} }}",
        "rules:",
        f"  sshd: {{ log_files: [{log_file}], failed_attempts: {failed_attempts} }}",
    ]
    lines += [f"  {json.dumps(name)}: {{ enabled: false }}" for name in disable
              if name != "sshd"]
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


def fleet_config(tmp, name, redis_url):
    """One fleet member's configuration, in tmp/name: failed_attempts 1, store redis,
    only the sshd rule, on tmp/name/auth.log (created empty), nftables.
    Returns (configuration, log)."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    log = os.path.join(d, "auth.log")
    open(log, "w").close()
    cfg = os.path.join(d, "pyfilter.yml")
    with open(cfg, "w") as f:
        f.write("\n".join([
            f"server_name: {name}",
            "failed_attempts: 1",
            "store: redis",
            f"redis: {{ url: '{redis_url}' }}",
            f"sqlite: {{ path: {os.path.join(d, name + '.db')} }}",
            f"rules_dir: {os.path.join(tmp, 'none')}",
            "enabled_rules: [sshd]",
            f"rules: {{ sshd: {{ log_files: [{log}] }} }}",
            "firewall: { backend: nftables }",
        ]) + "\n")
    return cfg, log


def admin_config(d, redis_url=None):
    """d/pyfilter.yml for the web admin: no firewall, SQLite d/pyfilter.db (or Redis),
    the admin's log in d. Returns (configuration, database)."""
    db = os.path.join(d, "pyfilter.db")
    cfg = os.path.join(d, "pyfilter.yml")
    text = (f"firewall: {{ backend: none }}\nsqlite: {{ path: {db} }}\n"
            f"admin: {{ log: {d}/admin.log }}\nserver_name: web-1\nenabled_rules: [sshd]\n")
    if redis_url:
        text += f"store: redis\nredis: {{ url: '{redis_url}' }}\n"
    with open(cfg, "w") as f:
        f.write(text)
    return cfg, db


def other_rules(pyfilter, cfg):
    """Names of the enabled rules other than sshd, from `pyfilter check`."""
    r = subprocess.run([pyfilter, "-c", cfg, "check"], capture_output=True, text=True)
    return [m.group(1) for m in re.finditer(r"^  (\S+) \(enabled", r.stdout, re.M)
            if m.group(1) != "sshd"]


# --------------------------------------------------------------------------------------
# A running pyfilter.

class Daemon:
    """`pyfilter -c CFG run` (or other ARGS), directly or in a Netns; its stderr read by
    a thread as it comes. The moment (clock()) and line of the first line containing each
    of MARKS are kept (`at`, `line`), with the bans it logged and its last lines."""

    MARKS = {"ready": "pyfilter ready", "sync": "sync: connected",
             "caught_up": "caught up with the fleet", "stopped": "stopped (",
             "admin_ready": "admin ready on "}
    BANNED_REMOTE = re.compile(r"\bbanned (\S+) \(from (\S+), rule (\S+)\)")
    BANNED_LOCAL = re.compile(r"\bbanned (\S+) \(rule (\S+), ")

    def __init__(self, pyfilter, cfg, name="the daemon", ns=None, args=("run",), keep=60):
        self.name = name
        self.keep = keep
        self.lines = []           # the last `keep`, past the first 3 bans of each kind
        self.errors = []          # ERROR and WARN lines
        self.at, self.line = {}, {}
        self.exec_at = None       # when the guard exec'd it (in a Netns)
        self.remote_bans = {}     # ip -> (server, rule)
        self.remote_at = {}       # ip -> clock() when its line was read
        self.local_bans = 0
        self.eof = False
        self.cond = threading.Condition()
        argv = [pyfilter, "-c", cfg, *args]
        self.t_start = clock()
        self.proc = spawn(ns.argv(argv) if ns is not None else argv, grace=15.0,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        for raw in self.proc.stderr:
            t = clock()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                if line.startswith(GUARD_STAMP):
                    try:
                        self.exec_at = float(line[len(GUARD_STAMP):].split()[0])
                    except ValueError:
                        pass
                    continue
                m = self.BANNED_REMOTE.search(line)
                if m:
                    self.remote_bans[m.group(1)] = (m.group(2), m.group(3))
                    self.remote_at.setdefault(m.group(1), t)
                    if len(self.remote_bans) > 3:
                        self.cond.notify_all()
                        continue
                elif self.BANNED_LOCAL.search(line):
                    self.local_bans += 1
                    if self.local_bans > 3:
                        continue
                if " ERROR" in line[:40] or " WARN" in line[:40]:
                    self.errors.append(line)
                for mark, text in self.MARKS.items():
                    if mark not in self.at and text in line:
                        self.at[mark], self.line[mark] = t, line
                self.lines.append(line)
                del self.lines[:-self.keep]
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    @property
    def banned(self):
        """Bans it logged: its own and the fleet's."""
        return self.local_bans + len(self.remote_bans)

    def wait(self, mark, timeout):
        """Waits until the daemon logs MARKS[mark]; its moment. Raises if it does not."""
        with self.cond:
            self.cond.wait_for(lambda: mark in self.at or self.eof, timeout)
            if mark in self.at:
                return self.at[mark]
        time.sleep(0.2)
        rc = self.proc.poll()
        when = (f"exited {rc} before it logged" if rc is not None
                else f"did not log within {timeout:g} s")
        raise BenchError(f"{self.name} {when} '{self.MARKS[mark].strip()}'; its stderr:\n"
                         "    " + ("\n    ".join(self.lines[-20:]) or "(nothing)"))

    def ready_after(self, timeout):
        """Waits for 'pyfilter ready'; seconds from the spawn. (Its message when the
        daemon does not get there is scripts/bench's, as wait()'s is scripts/bench-sync's.)"""
        with self.cond:
            self.cond.wait_for(lambda: "ready" in self.at or self.eof, timeout)
            if "ready" in self.at:
                return self.at["ready"] - self.t_start
        time.sleep(0.2)
        raise BenchError(f"the daemon did not log 'pyfilter ready' within {timeout:g} s "
                         f"(exit {self.proc.poll()}); its stderr:\n  "
                         + "\n  ".join(self.lines[-20:]))

    def stop(self, grace=15.0):
        """SIGTERM, SIGKILL after `grace`; (was it alive, its exit code)."""
        alive = self.proc.poll() is None
        rc = stop_child(self.proc, grace=grace)
        STARTED.forget(self.proc)
        self.thread.join(2.0)
        return alive, rc
