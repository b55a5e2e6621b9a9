"""Burst: 10,000 attackers in one write, until the kernel holds all of them.

For each firewall backend, in a fresh network namespace (`unshare --net`) running
`pyfilter run` with only the sshd rule and failed_attempts 1: 10,000 `Failed password`
lines from distinct addresses (198.18.0.0/15) stamped with the current time, appended in
one write; the time until the kernel holds all 10,000 (its count polled: `iptables -S
PYFILTER`, `ipset list -t pyfilter-v4`, `nft list set inet pyfilter v4`). Target <= 5 s
(ipset, nftables); iptables reported without a target. Also the daemon's own CPU time
(utime + stime of all its threads, not the firewall tools it runs) from the write until
a second after all are in: matching, deciding, recording (with the store's change-feed
triggers) and reading back its own changes; less sensitive to a busy machine than the
wall-clock figure.
"""

import os
import statistics
import time

from benchlib.base import clock, ipv4, note, say
from benchlib.daemon import Daemon, sshd_config
from benchlib.figures import cpu_ticks, read_status, verdict
from benchlib.firewall import BACKENDS, kernel_count
from benchlib.logs import Appender, empty_log, fail_line, syslog_now
from benchlib.netns import driver_problems, in_own_netns

SUITE = "bench"
ORDER = 30
TOOLS = (("iptables", "iptables"), ("ipset", "ipset"), ("nft", "nftables"))

BURST_COUNT = 10_000
BURST_TARGET_S = {"ipset": 5.0, "nftables": 5.0}          # iptables: reported, no target
BURST_TIMEOUT_S = {"iptables": 90.0, "ipset": 30.0, "nftables": 30.0}
# Never the target of any traffic, only text in a log and members of sets in a namespace
# that has nothing but a loopback interface (down).
BURST_BASE = (198 << 24) | (18 << 16)      # 198.18.0.0/15, the benchmarking range


def measure(run, res):
    for backend in BACKENDS:
        note(f"burst/{backend}: {BURST_COUNT:,} addresses at once")
        res[backend] = in_own_netns(
            "burst", run.tmp, 60 + BURST_TIMEOUT_S[backend], phase="burst",
            backend=backend, pyfilter=run.pyfilter, disable=run.disable)


def in_netns(ctx, res):
    backend = ctx["backend"]
    log_path = empty_log(os.path.join(ctx["tmp"], "log", "auth.log"))
    cfg = sshd_config(ctx["tmp"], log_path, backend, 1, ctx["disable"])
    daemon = Daemon(ctx["pyfilter"], cfg)
    res["daemon"] = daemon
    res["startup_ms"] = daemon.ready_after(15) * 1000
    time.sleep(0.3)
    res["before"], _ = kernel_count(backend)
    stamp = syslog_now()
    data = "".join(fail_line(ipv4(BURST_BASE + 1 + i), i, stamp)
                   for i in range(BURST_COUNT)).encode()
    pause = 0.05 if backend == "iptables" else 0.01
    timeout = BURST_TIMEOUT_S[backend]
    note(f"burst/{backend}: appending {BURST_COUNT:,} lines in one write")
    cpu0 = cpu_ticks(daemon.pid)[0]
    with Appender(log_path) as log:
        t0 = clock()
        log.write(data)
    last_below, full_at, polls, queries, n = t0, None, 0, [], None
    while True:
        n, q = kernel_count(backend)
        t = clock()
        polls += 1
        queries.append(q)
        if n is not None and n >= BURST_COUNT:
            full_at = t
            break
        last_below = t - q  # the query that still saw fewer started then
        res["partial"] = n
        if t - t0 > timeout or daemon.proc.poll() is not None:
            break
        time.sleep(pause)
    res["count"] = n
    res["polls"] = polls
    res["query_ms"] = statistics.median(queries) * 1000 if queries else None
    res["pause_ms"] = pause * 1000
    res["full_s"] = None if full_at is None else full_at - t0
    res["below_s"] = last_below - t0
    time.sleep(1.0)
    res["cpu_s"] = (cpu_ticks(daemon.pid)[0] - cpu0) / os.sysconf("SC_CLK_TCK")
    res["daemon_rss_kb"] = read_status(daemon.pid).get("VmRSS")


def report(run, res):
    problems, misses, warnings = run.report.problems, run.report.misses, run.report.warnings
    say(f"3. Burst: {BURST_COUNT:,} distinct addresses in one write (failed_attempts 1) "
        "-> all in the kernel")
    say(f"   {'backend':10}{'all in (s)':>12}{'still short at':>16}{'kernel':>9}"
        f"{'polls':>7}{'query ms':>10}{'CPU s':>7}{'target':>9}")
    for b in BACKENDS:
        r = res[b]
        target = BURST_TARGET_S.get(b)
        tgt = f"<= {target:g} s" if target else "none"
        if driver_problems(run.report, f"burst/{b}", r):
            say(f"   {b:10}   could not run: {r['error'].splitlines()[0]}")
            continue
        full = r.get("full_s")
        ok = full is not None and (target is None or full <= target)
        say(f"   {b:10}{'-' if full is None else format(full, '.3f'):>12}"
            f"{r['below_s']:>15.3f}s{r.get('count') or 0:>9,}{r['polls']:>7}"
            f"{r.get('query_ms') or 0:>10.1f}{r.get('cpu_s') or 0:>7.2f}{tgt:>9}"
            + (f"   {verdict(ok)}" if target else ""))
        if full is None:
            problems.append(f"burst/{b}: only {r.get('count')} of {BURST_COUNT:,} bans in "
                            f"the kernel after {BURST_TIMEOUT_S[b]:g} s")
        elif target and full > target:
            misses.append(f"burst ({b}) {full:.2f} s (target <= {target:g} s)")
        if r.get("daemon_banned", 0) < BURST_COUNT and full is not None:
            warnings.append(f"burst/{b}: the daemon logged {r.get('daemon_banned')} bans "
                            f"for {BURST_COUNT:,}")
    say("   method: the kernel's count (iptables -S PYFILTER | ipset list -t pyfilter-v4 | "
        "nft list set inet pyfilter v4) polled")
    say("   every 10 ms (iptables: 50 ms) after the query; 'all in' is when the first full "
        "count was read (upper bound),")
    say("   'still short at' when the last short query started (lower bound). 'CPU s': the daemon's own")
    say("   utime+stime (its threads, not the firewall tools) from the write to 1 s after all are in.")
    say()


def summary(run, res):
    for b in BACKENDS:
        r = res[b]
        if "error" in r:
            say(f"  burst     {b:9} no measurement (see problems)")
            continue
        full, target = r.get("full_s"), BURST_TARGET_S.get(b)
        ok = full is not None and (target is None or full <= target)
        say(f"  burst     {b:9} "
            + ("not all in" if full is None else f"{full:6.3f} s")
            + f" ({r.get('cpu_s') or 0:.2f} CPU-s)   "
            + (f"target <= {target:g} s   {verdict(ok)}" if target else "no target"))


def daemon_logs(run, res):
    return [(f"burst/{b}", None, res[b].get("daemon_stderr")) for b in BACKENDS]
