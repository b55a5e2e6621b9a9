"""Ban latency: from the deciding log line to the ban in the kernel, for each backend.

For each firewall backend (iptables, ipset, nftables), in a fresh network namespace
(`unshare --net`) running `pyfilter run` with only the sshd rule: for PYFILTER_BENCH_BANS
documentation addresses, appends 4 failing lines, then times from just before the 5th
(deciding) line is appended until the ban is in the kernel. iptables: the DROP rule as
`nft monitor rules` reports it; nftables: the set element as `nft monitor` reports it
(both timestamped when the event is read); ipset (which has no event interface): a tight
poll from Python with the netlink request `ipset test` sends (IPSET_CMD_TEST, ~10 us
each, one every ~0.3 ms), the first poll that sees the member giving an upper bound; the
mean poll period is printed as the resolution. PYFILTER_BENCH_POLL=1 polls iptables and
nftables too (`iptables -S`, `nft get element`). Targets: p99 <= 20 ms (iptables),
<= 10 ms (ipset, nftables).

Before the measured bans, a start-up probe: the five lines of one address appended the
moment the daemon says it is ready must lead to a ban (lines written just after
readiness must not be lost); it is not part of the figures.
"""

import os
import time

from benchlib.base import clock, note, say
from benchlib.daemon import Daemon, sshd_config
from benchlib.figures import pct, read_status, verdict
from benchlib.firewall import (BACKENDS, IPSET_V4, IpsetNetlink, Monitor, Poller,
                               has_element, has_rule, ipset_test, kernel_count,
                               settle_monitor)
from benchlib.logs import Appender, empty_log, fail_line
from benchlib.netns import driver_problems, in_own_netns

SUITE = "bench"
ORDER = 20
TOOLS = (("iptables", "iptables"), ("ipset", "ipset"), ("nft", "nftables"))

P99_TARGET_MS = {"iptables": 20.0, "ipset": 10.0, "nftables": 10.0}
BAN_TIMEOUT_S = 2.0
FAILED_ATTEMPTS = 5
PROBE_ADDRESS = "198.51.100.250"


def bench_addresses(count):
    nets = ("203.0.113.", "198.51.100.")
    return [nets[i % 2] + str(10 + i // 2) for i in range(count)]


def measure(run, res):
    for backend in BACKENDS:
        note(f"latency/{backend}: {run.bans} bans in a private network namespace")
        res[backend] = in_own_netns(
            "latency", run.tmp, 60 + run.bans * (BAN_TIMEOUT_S + 0.3), phase="latency",
            backend=backend, pyfilter=run.pyfilter, disable=run.disable, count=run.bans)


def in_netns(ctx, res):
    backend, count = ctx["backend"], ctx["count"]
    log_path = empty_log(os.path.join(ctx["tmp"], "log", "auth.log"))
    cfg = sshd_config(ctx["tmp"], log_path, backend, FAILED_ATTEMPTS, ctx["disable"])
    res.update(latencies_ms=[], timeouts=[], early=[])
    detector = monitor = None
    if backend in ("iptables", "nftables"):
        monitor = Monitor(backend)
        if not settle_monitor(monitor):
            monitor.stop()
            monitor = None
    daemon = Daemon(ctx["pyfilter"], cfg)
    res["daemon"] = daemon
    res["startup_ms"] = daemon.ready_after(15) * 1000
    try:
        if monitor is not None and monitor.wait_ready(2.0):
            detector = monitor
            res["mode"] = ("nft monitor rules (event)" if backend == "iptables"
                           else "nft monitor (set element event)")
        elif monitor is not None:
            monitor.stop()
            monitor = None
        if detector is None:
            if backend == "iptables":
                detector = Poller(has_rule, 0.0, "polling iptables -S")
            elif backend == "nftables":
                detector = Poller(has_element, 0.0, "polling nft get element")
            else:
                try:
                    nl = IpsetNetlink(IPSET_V4)
                    nl.test(PROBE_ADDRESS)  # must answer "not a member" cleanly
                    detector = Poller(nl.test, 0.0002, "netlink ipset test poll")
                except OSError as e:
                    note(f"latency/ipset: netlink test unavailable ({e}); polling `ipset test`")
                    detector = Poller(ipset_test, 0.0, "polling `ipset test` processes")
            res["mode"] = detector.mode
        note(f"latency/{backend}: daemon ready in {res['startup_ms']:.0f} ms; "
             f"detecting bans with {res['mode']}")

        with Appender(log_path) as log:
            # Start-up probe: all five lines of one address appended the moment the daemon
            # says it is ready must lead to a ban. Not part of the latency figures.
            t0 = clock()
            log.write("".join(fail_line(PROBE_ADDRESS, 9000 + j)
                              for j in range(FAILED_ATTEMPTS)).encode())
            t1 = detector.wait_ban(PROBE_ADDRESS, t0 + BAN_TIMEOUT_S)
            res["probe_ms"] = None if t1 is None else (t1 - t0) * 1000
            if backend == "ipset" and t1 is None and isinstance(detector, Poller) \
                    and detector.probe is not ipset_test and ipset_test(PROBE_ADDRESS):
                # The netlink answer disagrees with ipset(8): trust ipset(8).
                note("latency/ipset: netlink test disagrees with `ipset test`; polling that")
                detector = Poller(ipset_test, 0.0, "polling `ipset test` processes")
                res["mode"] = detector.mode
                res["probe_ms"] = None
            time.sleep(0.3)  # settle before the measured bans

            consecutive_timeouts = 0
            for i, ip in enumerate(bench_addresses(count)):
                pre = "".join(fail_line(ip, i * 10 + j) for j in range(FAILED_ATTEMPTS - 1))
                log.write(pre.encode())
                time.sleep(0.05)  # the daemon takes these in and goes idle
                if detector.present(ip):
                    res["early"].append(ip)
                deciding = fail_line(ip, i * 10 + FAILED_ATTEMPTS).encode()
                t0 = clock()
                log.write(deciding)
                t1 = detector.wait_ban(ip, t0 + BAN_TIMEOUT_S)
                if t1 is None:
                    res["timeouts"].append(ip)
                    consecutive_timeouts += 1
                    if daemon.proc.poll() is not None:
                        res["aborted"] = f"the daemon exited ({daemon.proc.returncode})"
                        break
                    if consecutive_timeouts >= 5:
                        res["aborted"] = "5 bans in a row never reached the kernel"
                        break
                else:
                    consecutive_timeouts = 0
                    res["latencies_ms"].append(max(0.0, (t1 - t0) * 1000))
        if isinstance(detector, Poller):
            res["resolution_ms"] = detector.resolution_ms()
        time.sleep(0.2)
        st = read_status(daemon.pid)
        res["daemon_hwm_kb"] = st.get("VmHWM")
        res["daemon_rss_kb"] = st.get("VmRSS")
        res["kernel_count"], _ = kernel_count(backend)
    finally:
        if monitor is not None:
            monitor.stop()


def _figures(r, b):
    """(sorted latencies, p50, p90, p99, target met?)."""
    lats = sorted(r["latencies_ms"])
    p50, p90, p99 = pct(lats, 50), pct(lats, 90), pct(lats, 99)
    return lats, p50, p90, p99, bool(lats) and p99 <= P99_TARGET_MS[b] and not r["timeouts"]


def report(run, res):
    problems, misses, warnings = run.report.problems, run.report.misses, run.report.warnings
    bans = run.bans
    say(f"2. Ban latency: {bans} addresses per backend, failed_attempts {FAILED_ATTEMPTS}, "
        "private netns; 5th line appended -> ban in the kernel")
    say(f"   {'backend':10}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'min':>8}   (ms)"
        f"{'target p99':>14}")
    for b in BACKENDS:
        r = res[b]
        target = P99_TARGET_MS[b]
        if driver_problems(run.report, f"latency/{b}", r):
            say(f"   {b:10}   could not run: {r['error'].splitlines()[0]}")
            continue
        lats, p50, p90, p99, ok = _figures(r, b)
        if lats:
            say(f"   {b:10}{p50:8.2f}{p90:8.2f}{p99:8.2f}{lats[-1]:8.2f}{lats[0]:8.2f}"
                f"{'':10}{'<= ' + format(target, 'g'):>10}   {verdict(ok)}")
        else:
            say(f"   {b:10}   no ban reached the kernel{'':27}"
                f"{'<= ' + format(target, 'g'):>10}   MISS")
        if lats and p99 > target:
            misses.append(f"ban latency ({b}) p99 {p99:.2f} ms (target <= {target:g} ms)")
        if r["timeouts"]:
            problems.append(f"latency/{b}: {len(r['timeouts'])} of {bans} bans did not "
                            f"reach the kernel within {BAN_TIMEOUT_S:g} s "
                            f"(first: {', '.join(r['timeouts'][:5])})")
        if r.get("aborted"):
            problems.append(f"latency/{b}: aborted: {r['aborted']}")
        if r.get("early"):
            problems.append(f"latency/{b}: {len(r['early'])} addresses were banned before "
                            f"their {FAILED_ATTEMPTS}th line (first: {r['early'][0]})")
        expect = len(lats) + (0 if r.get("probe_ms") is None else 1)
        if r.get("kernel_count") is not None and r["kernel_count"] < expect:
            problems.append(f"latency/{b}: the kernel holds {r['kernel_count']} bans after "
                            f"{expect} were seen")
        if r.get("probe_ms", 0) is None:
            warnings.append(
                f"latency/{b}: start-up probe: {FAILED_ATTEMPTS} failing lines for "
                f"{PROBE_ADDRESS} appended right after 'pyfilter ready' was logged led to no "
                f"ban within {BAN_TIMEOUT_S:g} s: lines written just after readiness may be "
                "lost (the measured bans start 0.3 s later)")
    say("   detection:")
    for b in BACKENDS:
        r = res[b]
        if "error" in r:
            continue
        how = r.get("mode")
        if r.get("resolution_ms") is not None:
            how += (f"; one poll every {r['resolution_ms']:.3f} ms on average, so each "
                    f"figure is an upper bound, late by at most that")
        else:
            how += "; timestamped when the event line is read"
        probe = r.get("probe_ms", 0)
        say(f"     {b:9} {how}")
        say(f"     {'':9} {len(r['latencies_ms'])}/{bans} measured, "
            f"{len(r['timeouts'])} timeouts, kernel holds {r.get('kernel_count')} "
            f"(incl. probe), start-up {r.get('startup_ms', float('nan')):.0f} ms, probe "
            + ("NO BAN" if probe is None else f"{probe:.2f} ms"))
    say()


def summary(run, res):
    for b in BACKENDS:
        r = res[b]
        if "error" in r:
            say(f"  ban       {b:9} no measurement (see problems)")
        else:
            _, p50, _, p99, ok = _figures(r, b)
            say(f"  ban       {b:9} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms   target p99 <= "
                f"{P99_TARGET_MS[b]:g} ms   {verdict(ok)}")


def daemon_logs(run, res):
    return [(f"latency/{b}", None, res[b].get("daemon_stderr")) for b in BACKENDS]
