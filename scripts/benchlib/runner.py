"""Suites and their concerns: finding them, running them, and the entry points' main.

A concern is one file in scripts/benchmarks/, named after what it measures, whose
docstring says what it measures and how. It defines:

  SUITE = "bench"        the entry point that runs it: bench, bench-sync or bench-admin
  ORDER = 30             its place in the suite: measured, reported and summed up in
                         this order
  TOOLS = (("nft", "nftables"), ...)   programs it needs, and their Debian packages
  measure(run, res)      measures, filling the dict `res` (= run.results[its name])
  report(run, res)       prints its section of the report and adds its problems,
                         misses and warnings to run.report
and may define:
  prepare(run)           before the measurements (and their CPU accounting) start
  header(run)            lines of the report's header
  summary(run, res)      its lines of the report's summary
  summary_tail(run, res) lines after every concern's summary
  daemon_logs(run, res)  [(label, name, lines)]: what its daemons logged last, shown when
                         a PROBLEM line starts with the label
  in_netns(ctx, res)     the part measured in a network namespace of its own (see
                         netns.in_own_netns)

A concern reads the others' results through run.results (absent when they were not
selected) and what its suite prepared through `run` (the binary, options, a tmp dir).
"""

import importlib
import pkgutil
import shutil
import signal
import sys
import textwrap

from . import base
from .base import SCRIPTS, BenchError
from .figures import Report
from .procs import STARTED

if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)


class Run:
    """One run of a suite: what its concerns share. The entry point sets the rest
    (options, the binary, a temporary directory, a Redis, ...) as attributes."""

    def __init__(self, suite):
        self.suite = suite
        self.results = {}     # concern -> the dict its measure() filled
        self.errors = {}      # concern -> why it could not run (suites that go on)
        self.report = Report()
        self.pyfilter = self.build_note = self.tmp = None


def concerns(suite):
    """The concern modules of a suite, in their ORDER."""
    import benchmarks
    mods = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        m = importlib.import_module(f"benchmarks.{info.name}")
        if getattr(m, "SUITE", None) == suite:
            mods.append(m)
    return sorted(mods, key=lambda m: (m.ORDER, name_of(m)))


def name_of(module):
    return module.__name__.rsplit(".", 1)[-1]


def select(suite, names):
    """The suite's concerns named (all of them when none is), in their ORDER."""
    mods = concerns(suite)
    known = [name_of(m) for m in mods]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"no benchmark {', '.join(unknown)} in {suite}; there are: "
                         + ", ".join(known))
    return [m for m in mods if not names or name_of(m) in names]


def check_tools(mods):
    """Stops the run before anything if a program that a concern needs is missing."""
    seen = set()
    for m in mods:
        for tool, pkg in getattr(m, "TOOLS", ()):
            if tool not in seen and shutil.which(tool) is None:
                raise BenchError(f"{tool} not found: apt-get install -y {pkg}")
            seen.add(tool)


def call(mods, hook, run):
    """hook(run) of each concern that has it."""
    for m in mods:
        if hasattr(m, hook):
            getattr(m, hook)(run)


def call_with_result(mods, hook, run):
    """hook(run, its result) of each concern that has it; the values returned."""
    return [getattr(m, hook)(run, run.results.setdefault(name_of(m), {}))
            for m in mods if hasattr(m, hook)]


def measure(run, mods, keep_going=False):
    """Runs each concern's measure(). A BenchError stops the run, or with keep_going
    is kept in run.errors for its report."""
    for m in mods:
        res = run.results.setdefault(name_of(m), {})
        try:
            m.measure(run, res)
        except BenchError as e:
            if not keep_going:
                raise
            run.errors[name_of(m)] = str(e)


def could_not_run(run, name):
    """For a concern of a suite that went on without it: the PROBLEM line and the
    message, indented. True if it could not run."""
    if name not in run.errors:
        return False
    err = run.errors[name]
    run.report.problems.append(f"{name}: {err.splitlines()[0]}")
    base.say("   could not run:")
    for line in err.splitlines()[:30]:
        base.say(f"     {line}")
    return True


def help_text(doc, suite):
    out = [doc.strip("\n"), "", "Benchmarks (scripts/benchmarks/; name some to run only "
           "those, in this order):"]
    for m in concerns(suite):
        out.append("")
        out.append(f"  {name_of(m)}")
        out.append(textwrap.indent(textwrap.dedent(m.__doc__ or "").strip("\n"), "    "))
    return "\n".join(out)


def main(suite, doc, body, error_exit=1, error_prefix="FAILED: "):
    """An entry point's main (the suite is named after the entry point): `body(names)`
    runs the suite (all its concerns, or those named on the command line) and returns the
    exit status. -h prints the entry point's docstring and its concerns'. A BenchError
    ends the run with `error_exit`."""
    prog = suite
    base.PROG = prog
    args = sys.argv[1:]
    if args[:1] in (["-h"], ["--help"]):
        print(help_text(doc, suite))
        sys.exit(0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(body(args))
    except BenchError as e:
        STARTED.stop_all()
        print(f"{prog}: {error_prefix}{e}", file=sys.stderr)
        sys.exit(error_exit)
    except KeyboardInterrupt:
        STARTED.stop_all()
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
