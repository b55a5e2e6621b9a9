"""Network namespaces of the run's own. No firewall command ever runs in the host's.

Two ways in, for two needs:

  in_own_netns(concern, ...)  runs the concern's `in_netns(ctx, res)` in a driver process
      started with `unshare --net`: the whole measurement (daemon, monitors, the netlink
      socket of the ipset poll) lives in a fresh namespace, which goes away with it. The
      driver re-checks that its namespace differs from the host's before anything.
  Netns(name)  a namespace held by a `sleep` started with `unshare --net`, for runs with
      several of them at once (a fleet): each process is started in it through `nsenter
      --net=/proc/HOLDER/ns/net` and then guard.py, which refuses to exec in the host's.
"""

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from .base import SCRIPTS, BenchError, clock
from .guard import STAMP as GUARD_STAMP
from .procs import STARTED, pdeathsig, spawn, stop_child

HOST_NS = os.readlink("/proc/self/ns/net")
GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guard.py")


class Netns:
    """A network namespace of this run's own, held by a `sleep` started with
    `unshare --net`."""

    def __init__(self, name):
        self.name = name
        self.holder = spawn(["unshare", "--net", "--", "sleep", "3600"], grace=2.0)
        self.path = f"/proc/{self.holder.pid}/ns/net"
        deadline = clock() + 5.0
        while True:
            try:
                ns = os.readlink(self.path)
                if ns != HOST_NS:
                    self.id = ns
                    return
            except OSError:
                pass
            if self.holder.poll() is not None or clock() > deadline:
                raise BenchError(f"namespace {name}: `unshare --net sleep` did not make a "
                                 f"network namespace (exit {self.holder.poll()})")
            time.sleep(0.01)

    def argv(self, prog):
        """The command line that runs `prog` (a list) inside this namespace, guarded."""
        if self.holder.poll() is not None:
            raise BenchError(f"namespace {self.name}: its holder (PID {self.holder.pid}) "
                             "is gone")
        return (["nsenter", f"--net={self.path}", "--", sys.executable, "-S", GUARD,
                 HOST_NS, "--"] + prog)

    def run(self, prog, timeout=60):
        """Runs `prog` inside the namespace; (exit code, stdout, stderr without the
        guard's stamp)."""
        r = subprocess.run(self.argv(prog), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        err = "\n".join(l for l in r.stderr.splitlines() if not l.startswith(GUARD_STAMP))
        return r.returncode, r.stdout, err

    def close(self):
        """Stops the holder: the namespace goes with the last process in it."""
        stop_child(self.holder, grace=2.0)
        STARTED.forget(self.holder)


def in_own_netns(concern, tmp, timeout, **ctx):
    """Runs `benchmarks.<concern>.in_netns(ctx, res)` in a fresh network namespace, in
    the work directory tmp/<phase>-<backend>; the result dict it filled (with "error"
    when it could not run). ctx must be JSON-able and name "phase" and "backend"."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise BenchError("unshare(1) not found (util-linux)")
    phase, backend = ctx["phase"], ctx["backend"]
    work = os.path.join(tmp, f"{phase}-{backend}")
    os.makedirs(work)
    ctx = dict(ctx, concern=concern, tmp=work, host_ns=HOST_NS)
    boot = (f"import sys; sys.dont_write_bytecode = True; sys.path.insert(0, {SCRIPTS!r}); "
            "import benchlib.netns as n; "
            "sys.exit(n.driver_main(sys.argv[1:]))")
    drv = subprocess.Popen([unshare, "--net", "--", sys.executable, "-c", boot,
                            json.dumps(ctx)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           preexec_fn=pdeathsig)
    try:
        out, _ = drv.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_child(drv, grace=15.0)
        return {"error": f"the {phase} driver ({backend}) did not finish in {timeout:g} s"}
    finally:
        stop_child(drv)
    try:
        res = json.loads(out.decode().strip().splitlines()[-1])
    except Exception:
        return {"error": f"the {phase} driver ({backend}) failed (exit {drv.returncode})"}
    if res.get("netns") == HOST_NS:
        raise BenchError(f"{phase} driver ran in the host namespace (unshare failed?)")
    return res


def driver(ctx):
    """Inside the namespace: runs the concern's in_netns; returns a JSON-able dict. A
    pyfilter it left in res["daemon"] is stopped here, and what it logged kept."""
    here = os.readlink("/proc/self/ns/net")
    if here == ctx["host_ns"]:
        raise BenchError(f"refusing to run: still in the host network namespace ({here})")
    res = {"netns": here, "backend": ctx["backend"], "phase": ctx["phase"]}
    try:
        module = importlib.import_module(f"benchmarks.{ctx['concern']}")
        module.in_netns(ctx, res)
    except BenchError as e:
        res["error"] = str(e)
    except Exception as e:  # report, do not hide
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        daemon = res.pop("daemon", None)
        if daemon is not None:
            res["daemon_alive"], res["daemon_exit"] = daemon.stop(grace=10.0)
            res["daemon_stderr"] = daemon.lines[-40:]
            res["daemon_banned"] = daemon.banned
            res["daemon_stopped"] = daemon.line.get("stopped")
        STARTED.stop_all()
    return res


def driver_main(argv):
    ctx = json.loads(argv[0])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        res = driver(ctx)
    except BenchError as e:
        res = {"error": str(e)}
    print(json.dumps(res), flush=True)
    return 0 if "error" not in res else 1


def driver_problems(report, label, r):
    """PROBLEM lines for a result of in_own_netns: it could not run, or its daemon died
    or did not stop cleanly. True if it could not run."""
    if "error" in r:
        report.problems.append(f"{label}: {r['error'].splitlines()[0]}")
        return True
    if r.get("daemon_alive") is False:
        report.problems.append(f"{label}: the daemon died during the test "
                               f"(exit {r.get('daemon_exit')})")
    elif r.get("daemon_exit") not in (0, None):
        report.problems.append(f"{label}: the daemon exited {r['daemon_exit']} on SIGTERM")
    return False
