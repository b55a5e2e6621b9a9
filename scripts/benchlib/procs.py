"""Child processes: they die with the process that started them, and are only ever
stopped by their own PID."""

import ctypes
import signal
import subprocess

from .base import note

try:  # loaded now: after fork (with threads running) only the call itself is made
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except Exception:
    _prctl = None


def pdeathsig():
    """preexec_fn: SIGTERM this child if the process that started it dies (kept across
    the execs of nsenter and the namespace guard)."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def stop_child(proc, sig=signal.SIGTERM, grace=5.0):
    """Stops a subprocess.Popen we started (by its PID only). Returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Started:
    """Every long-lived process this run started, stopped in reverse order at the end
    (whatever a concern's own clean-up did not stop already)."""

    def __init__(self):
        self.procs = []

    def add(self, proc, grace=5.0):
        self.procs.append((proc, grace))
        return proc

    def stop(self, proc):
        """Stops one of them now; its exit code."""
        grace = next((g for p, g in self.procs if p is proc), 5.0)
        try:
            return stop_child(proc, grace=grace)
        finally:
            self.forget(proc)

    def stop_all(self):
        while self.procs:
            proc, grace = self.procs.pop()
            try:
                stop_child(proc, grace=grace)
            except Exception as e:  # keep stopping the others
                note(f"could not stop PID {proc.pid}: {e}")

    def forget(self, proc):
        self.procs = [(p, g) for p, g in self.procs if p is not proc]


STARTED = Started()


def spawn(argv, grace=5.0, **kw):
    """subprocess.Popen(argv) that dies with us, registered in STARTED."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return STARTED.add(subprocess.Popen(argv, preexec_fn=pdeathsig, **kw), grace=grace)


def run_quiet(argv, timeout=60):
    """Runs argv to the end; (exit code, stdout, stderr)."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr
