"""fail2ban-regex against `pyfilter scan`, on the first 100,000 lines of the big log.

If fail2ban-regex is installed: it runs with its sshd filter on the first 100,000 lines
of the scan benchmark's log (at most 2 runs), and `pyfilter scan --rule sshd --json` on
the same slice; the ratio of wall times (target >= 100x), and for information the ratio
without either program's start-up (fail2ban's own "processed in" against pyfilter's scan
less its scan of an empty file). Skipped when fail2ban-regex is not installed.
"""

import os
import re
import shutil

from benchlib.base import note, say
from benchlib.daemon import version_of
from benchlib.figures import spawn_wait, verdict
from benchlib.logs import big_sshd_log

from benchmarks.scan import scan_summary

SUITE = "bench"
ORDER = 70

F2B_LINES = 100_000
F2B_RATIO_TARGET = 100.0


def prepare(run):
    big_sshd_log(run)


def measure(run, res):
    r = bench_fail2ban(run.pyfilter, run.scan_cfg, run.big_log["path"], run.tmp,
                       min(run.runs, 2))
    if r is None:
        res["skipped"] = True
    else:
        res.update(r)


def bench_fail2ban(pyfilter, cfg, log, tmp, runs):
    f2b = shutil.which("fail2ban-regex")
    if f2b is None:
        return None
    path = os.path.join(tmp, "f2b-slice.log")
    with open(log, "rb") as src, open(path, "wb") as out:
        for i, line in enumerate(src):
            if i >= F2B_LINES:
                break
            out.write(line)
    with open(path, "rb") as f:
        lines = sum(1 for _ in f)
    empty = os.path.join(tmp, "empty.log")
    open(empty, "w").close()
    res = {"bin": f2b, "version": version_of([f2b, "--version"]), "lines": lines,
           "f2b_times": [], "pf_times": [], "pf_empty_times": [], "f2b_processed": None}
    out_path = os.path.join(tmp, "f2b.out")
    for i in range(runs):
        note(f"fail2ban-regex: timed run {i + 1}/{runs} on {lines:,} lines")
        t, rc, _ = spawn_wait([f2b, path, "sshd"], out_path)
        if rc != 0:
            with open(out_path, errors="replace") as f:
                tail = f.read()[-600:]
            return dict(res, error=f"fail2ban-regex exited {rc}: {tail.strip()}")
        res["f2b_times"].append(t)
        with open(out_path, errors="replace") as f:
            text = f.read()
        m = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed",
                      text, re.M)
        if m:
            res["f2b_counts"] = tuple(int(g) for g in m.groups())
        m = re.search(r"\[processed in ([\d.]+) sec\]", text)
        if m:
            p = float(m.group(1))
            res["f2b_processed"] = p if res["f2b_processed"] is None else min(
                res["f2b_processed"], p)
        t, rc, _ = spawn_wait([pyfilter, "-c", cfg, "scan", "--rule", "sshd", "--json", path],
                              "/dev/null")
        if rc != 0:
            return dict(res, error=f"pyfilter scan of the slice exited {rc}")
        res["pf_times"].append(t)
        t, rc, _ = spawn_wait([pyfilter, "-c", cfg, "scan", "--rule", "sshd", "--json",
                               empty], "/dev/null")
        if rc == 0:
            res["pf_empty_times"].append(t)
    res["pf_summary"] = scan_summary(pyfilter, cfg, path)
    return res


def _ratio(f2b):
    """(fail2ban-regex / pyfilter, target met?), or (None, None)."""
    if f2b.get("skipped") or "error" in f2b:
        return None, None
    fb, pb = min(f2b["f2b_times"]), min(f2b["pf_times"])
    ratio = fb / pb if pb > 0 else float("inf")
    return ratio, ratio >= F2B_RATIO_TARGET


def report(run, f2b):
    problems, misses = run.report.problems, run.report.misses
    say(f"7. fail2ban-regex vs pyfilter scan: first {F2B_LINES:,} lines of the benchmark "
        "log, sshd filter")
    if f2b.get("skipped"):
        say("   skipped (fail2ban-regex not installed)")
    elif "error" in f2b:
        problems.append(f"fail2ban comparison: {f2b['error'].splitlines()[0]}")
        say(f"   could not run: {f2b['error'].splitlines()[0]}")
    else:
        fb, pb = min(f2b["f2b_times"]), min(f2b["pf_times"])
        f2b_ratio, f2b_ok = _ratio(f2b)
        counts = f2b.get("f2b_counts")
        say(f"   {'':40}{'best s':>8}{'lines/s':>13}   matched")
        say(f"   {'fail2ban-regex SLICE sshd':40}{fb:8.3f}{f2b['lines'] / fb:13,.0f}   "
            + (f"{counts[2]:,} failures + {counts[1]:,} 'ignored' matches, "
               f"{counts[3]:,} missed" if counts else "?"))
        say(f"   {'pyfilter scan --rule sshd --json SLICE':40}{pb:8.3f}"
            f"{f2b['lines'] / pb:13,.0f}   {f2b['pf_summary'].get('matched', 0):,} lines")
        say(f"   ratio fail2ban/pyfilter: {f2b_ratio:.0f}x    target: >= "
            f"{F2B_RATIO_TARGET:g}x    {verdict(f2b_ok)}")
        say(f"   (wall times, best of {len(f2b['f2b_times'])}, both including start-up; "
            f"{f2b['version']})")
        pe = min(f2b["pf_empty_times"]) if f2b["pf_empty_times"] else None
        if f2b.get("f2b_processed") and pe is not None and pb > pe:
            say(f"   without start-up: fail2ban's own 'processed in' "
                f"{f2b['f2b_processed']:.3f} s vs pyfilter {pb - pe:.3f} s (its scan of an "
                f"empty file takes {pe:.3f} s): {f2b['f2b_processed'] / (pb - pe):.0f}x")
        if not f2b_ok:
            misses.append(f"fail2ban-regex is only {f2b_ratio:.0f}x slower than pyfilter "
                          f"scan (target >= {F2B_RATIO_TARGET:g}x)")
    say()


def summary(run, f2b):
    f2b_ratio, f2b_ok = _ratio(f2b)
    if f2b.get("skipped"):
        say("  fail2ban  skipped (fail2ban-regex not installed)")
    elif f2b_ratio is not None:
        say(f"  fail2ban  fail2ban-regex / pyfilter scan = {f2b_ratio:.0f}x   target >= "
            f"{F2B_RATIO_TARGET:g}x   {verdict(f2b_ok)}")
    else:
        say("  fail2ban  no measurement (see problems)")
