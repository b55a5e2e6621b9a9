"""Propagation: a ban made on one server, until it is in another server's kernel.

Two instances, A and B, each in its own network namespace, with the nftables backend,
`store: redis` (the run's own redis-server), failed_attempts 1 and only the sshd rule.
For each of PYFILTER_BENCH_SYNC_BANS (1,000) distinct addresses (198.18.0.0/15, the
benchmarking range) one `Failed password` line stamped with the current time is appended
to A's log; the time runs from just before that write until the address is read from
`nft monitor` running in B's namespace (`add element inet pyfilter v4 { ADDR ... }`;
timestamped when the line is read, so an upper bound). Pacing: sequential: each ban is
appended 2 ms after the previous one was seen in both A's and B's kernels (a second `nft
monitor` in A's namespace), so no ban waits behind another. 5 warm-up bans come first
and are not counted. Target: p99 <= 50 ms.
"""

import statistics
import time

from benchlib.base import BenchError, clock, ipv4, note, say
from benchlib.daemon import Daemon, fleet_config
from benchlib.figures import mib, pct, read_status, verdict
from benchlib.firewall import Monitor, has_element, kernel_count
from benchlib.logs import Appender, fail_line
from benchlib.netns import Netns
from benchlib import runner

SUITE = "bench-sync"
ORDER = 10
TOOLS = (("nft", "nftables"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
         ("redis-server", "redis-server"), ("redis-cli", "redis-tools"))

WARMUP = 5
P99_TARGET_MS = 50.0
BAN_TIMEOUT_S = 2.0
PACE_GAP_S = 0.002
PROPAGATION_DEADLINE_S = 100.0       # the whole measured loop
PREFIX = "pyfilter:"
# 198.18.0.0/15, the benchmarking range: propagation from 198.18.0.1, warm-up in
# 198.18.15.0/24 (the reconcile seed starts at 198.18.16.0).
PROP_BASE = (198 << 24) | (18 << 16)
WARMUP_BASE = PROP_BASE | (15 << 8)


def measure(run, res):
    res.update(propagation(run.pyfilter, run.tmp, run.redis, run.bans))


def propagation(pyfilter, tmp, redis, count):
    res = {"latencies_ms": [], "local_ms": [], "timeouts": [], "early": [], "warmup_ms": []}
    ns_a, ns_b = Netns("A"), Netns("B")
    res["ns"] = (ns_a.id, ns_b.id)
    cfg_a, log_a = fleet_config(tmp, "a", redis.url)
    cfg_b, _ = fleet_config(tmp, "b", redis.url)
    mon_a, mon_b = Monitor(ns=ns_a), Monitor(ns=ns_b)
    mon_a.start()
    mon_b.start()
    time.sleep(0.3)  # let the monitors subscribe before the daemons build their tables
    a = b = None
    try:
        a = Daemon(pyfilter, cfg_a, "A", ns_a, keep=80)
        b = Daemon(pyfilter, cfg_b, "B", ns_b, keep=80)
        for d in (a, b):
            d.wait("ready", 15)
            d.wait("sync", 10)
            d.wait("caught_up", 10)
        for name, mon in (("A", mon_a), ("B", mon_b)):
            if not mon.wait_ready(3.0):
                raise BenchError(f"`nft monitor` in {name}'s namespace did not show "
                                 f"pyfilter's table being built (alive: {mon.alive()}; "
                                 f"{' | '.join(mon.other[-3:])})")
        note(f"propagation: A and B ready and subscribed; {WARMUP} warm-up bans, then "
             f"{count} measured")
        with Appender(log_a) as log:
            def one(ip, n):
                """Appends the deciding line; (ms to B's kernel or None, ms to A's)."""
                if mon_b.present(ip) or mon_a.present(ip):
                    res["early"].append(ip)
                data = fail_line(ip, n).encode()
                t0 = clock()
                log.write(data)
                tb = mon_b.wait_ban(ip, t0 + BAN_TIMEOUT_S)
                ta = mon_a.wait_ban(ip, t0 + BAN_TIMEOUT_S)
                return (None if tb is None else (tb - t0) * 1000,
                        None if ta is None else (ta - t0) * 1000)

            for i in range(WARMUP):
                ip = ipv4(WARMUP_BASE + 1 + i)
                tb, _ = one(ip, 90000 + i)
                if tb is None:
                    raise BenchError(
                        f"warm-up ban {ip} on A did not reach B's kernel within "
                        f"{BAN_TIMEOUT_S:g} s.\n  A's stderr:\n    "
                        + "\n    ".join(a.lines[-10:]) + "\n  B's stderr:\n    "
                        + "\n    ".join(b.lines[-10:]))
                res["warmup_ms"].append(tb)
                time.sleep(PACE_GAP_S)
            time.sleep(0.2)

            consecutive = 0
            t_begin = clock()
            for i in range(count):
                ip = ipv4(PROP_BASE + 1 + i)
                tb, ta = one(ip, i)
                if ta is not None:
                    res["local_ms"].append(ta)
                if tb is None:
                    res["timeouts"].append(ip)
                    consecutive += 1
                    if a.proc.poll() is not None or b.proc.poll() is not None:
                        res["aborted"] = (f"a daemon exited (A {a.proc.poll()}, "
                                          f"B {b.proc.poll()})")
                        break
                    if consecutive >= 5:
                        res["aborted"] = "5 bans in a row never reached B's kernel"
                        break
                else:
                    consecutive = 0
                    res["latencies_ms"].append(tb)
                if clock() - t_begin > PROPAGATION_DEADLINE_S:
                    res["aborted"] = (f"stopped after {i + 1} bans: the loop ran past "
                                      f"{PROPAGATION_DEADLINE_S:g} s")
                    break
                time.sleep(PACE_GAP_S)
            res["loop_s"] = clock() - t_begin
        res["attempted"] = len(res["latencies_ms"]) + len(res["timeouts"])
        time.sleep(0.3)
        # Timeouts: was the ban in B's kernel after all (the monitor missed it)?
        res["late_in_kernel"] = [ip for ip in res["timeouts"][:20] if has_element(ip, ns_b)]
        res["b_kernel"], _ = kernel_count("nftables", ns_b, timeout=120)
        res["a_kernel"], _ = kernel_count("nftables", ns_a, timeout=120)
        res["redis_active"] = int(redis.cli("ZCARD", PREFIX + "expiry").strip() or 0)
        res["example_record"] = redis.cli("HGET", PREFIX + "records", "1").splitlines()
        res["b_rss_kb"] = read_status(b.proc.pid).get("VmRSS")
    finally:
        for label, d in (("a", a), ("b", b)):
            if d is not None:
                alive, rc = d.stop()
                res[f"{label}_alive"], res[f"{label}_exit"] = alive, rc
                res[f"{label}_lines"] = d.lines[-40:]
                res[f"{label}_errors"] = d.errors[-10:]
                res[f"{label}_remote"] = dict(d.remote_bans)
                res[f"{label}_local"] = d.local_bans
        mon_a.stop()
        mon_b.stop()
        ns_a.close()
        ns_b.close()
    return res


def daemon_state(report, label, r, key):
    """PROBLEM lines when the daemon `key` (a, b, c) died or did not stop cleanly."""
    if r.get(f"{key}_alive") is False:
        report.problems.append(f"{label}: daemon {key.upper()} died during the test "
                               f"(exit {r.get(f'{key}_exit')})")
    elif r.get(f"{key}_exit") not in (0, None):
        report.problems.append(f"{label}: daemon {key.upper()} exited {r[f'{key}_exit']} "
                               "on SIGTERM")


def _ok(run, r):
    lats = sorted(r["latencies_ms"])
    p99 = pct(lats, 99)
    return bool(lats) and p99 <= P99_TARGET_MS and not r["timeouts"] and len(lats) == run.bans


def report(run, r):
    problems, misses, warnings = run.report.problems, run.report.misses, run.report.warnings
    bans = run.bans
    say(f"1. Propagation: {bans:,} bans made on A (one deciding `Failed password` line each, "
        "failed_attempts 1)")
    say("   -> the address in B's kernel (set inet pyfilter v4, seen by `nft monitor` in "
        "B's namespace)")
    if not runner.could_not_run(run, "propagation"):
        lats = sorted(r["latencies_ms"])
        local = sorted(r["local_ms"])
        p50, p90, p99 = pct(lats, 50), pct(lats, 90), pct(lats, 99)
        prop_ok = _ok(run, r)
        say(f"   {'':26}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'min':>8}{'mean':>8}   ms")
        if lats:
            say(f"   {'A log -> B kernel':26}{p50:8.2f}{p90:8.2f}{p99:8.2f}{lats[-1]:8.2f}"
                f"{lats[0]:8.2f}{statistics.fmean(lats):8.2f}   target p99 <= "
                f"{P99_TARGET_MS:g} ms   {verdict(prop_ok)}")
        else:
            say(f"   {'A log -> B kernel':26}   no ban reached B's kernel   MISS")
        if local:
            say(f"   {'A log -> A kernel (info)':26}{pct(local, 50):8.2f}{pct(local, 90):8.2f}"
                f"{pct(local, 99):8.2f}{local[-1]:8.2f}{local[0]:8.2f}"
                f"{statistics.fmean(local):8.2f}")
        say(f"   measured {len(lats):,}/{bans:,}, timeouts {len(r['timeouts'])} "
            f"(limit {BAN_TIMEOUT_S:g} s each), loop {r.get('loop_s', 0):.1f} s; "
            f"warm-up (not counted): "
            + ", ".join(f"{w:.1f}" for w in r["warmup_ms"]) + " ms")
        say(f"   pacing: sequential -- each line appended {PACE_GAP_S * 1000:g} ms after the "
            "previous ban was seen in both A's and B's kernels")
        say("   timing: CLOCK_MONOTONIC just before the write(2) to A's log -> when the "
            "monitor's line is read")
        say(f"   addresses: {ipv4(PROP_BASE + 1)} .. {ipv4(PROP_BASE + bans)} "
            f"(198.18.0.0/15), warm-up {ipv4(WARMUP_BASE + 1)} .. "
            f"{ipv4(WARMUP_BASE + WARMUP)}")
        total = bans + WARMUP
        b_logged = sum(1 for v in r.get("b_remote", {}).values() if v == ("a", "sshd"))
        say(f"   afterwards: B logged {b_logged:,} 'banned ... (from a, rule sshd)', A logged "
            f"{r.get('a_local', 0):,} local bans; kernels hold A {r.get('a_kernel')}, "
            f"B {r.get('b_kernel')}; Redis active {r.get('redis_active')}; "
            f"B RSS {mib(r.get('b_rss_kb'))}")
        daemon_state(run.report, "propagation", r, "a")
        daemon_state(run.report, "propagation", r, "b")
        if lats and p99 > P99_TARGET_MS:
            misses.append(f"propagation p99 {p99:.2f} ms (target <= {P99_TARGET_MS:g} ms)")
        if r["timeouts"]:
            problems.append(f"propagation: {len(r['timeouts'])} of {r['attempted']} bans did "
                            f"not reach B's kernel within {BAN_TIMEOUT_S:g} s (first: "
                            f"{', '.join(r['timeouts'][:5])}"
                            + (f"; in B's kernel later: {', '.join(r['late_in_kernel'][:5])}"
                               if r["late_in_kernel"] else "") + ")")
        if r.get("aborted"):
            problems.append(f"propagation: aborted: {r['aborted']}")
        if r["early"]:
            problems.append(f"propagation: {len(r['early'])} addresses were in a kernel "
                            f"before their line was written (first: {r['early'][0]})")
        if b_logged != total and not r.get("aborted"):
            problems.append(f"propagation: B logged {b_logged} remote bans from a, "
                            f"{total} were made")
        if r.get("b_kernel") != total and not r.get("aborted"):
            problems.append(f"propagation: B's kernel holds {r.get('b_kernel')} bans, "
                            f"{total} were made on A")
        if r.get("redis_active") != total and not r.get("aborted"):
            problems.append(f"propagation: Redis holds {r.get('redis_active')} active bans, "
                            f"{total} were made")
        for key in ("a", "b"):
            for line in r.get(f"{key}_errors", [])[:3]:
                warnings.append(f"propagation: {key.upper()} logged: {line}")
    say()


def summary(run, r):
    if "propagation" not in run.errors:
        lats = sorted(r["latencies_ms"])
        say(f"  propagation  A -> B kernel, {len(lats):,} bans: p50 {pct(lats, 50):.2f} ms, "
            f"p99 {pct(lats, 99):.2f} ms, max {lats[-1] if lats else float('nan'):.2f} ms   "
            f"target p99 <= {P99_TARGET_MS:g} ms   {verdict(_ok(run, r))}")
    else:
        say("  propagation  no measurement (see problems)")


def daemon_logs(run, r):
    if "propagation" in run.errors:
        return []
    return [("propagation", "A", r.get("a_lines")), ("propagation", "B", r.get("b_lines"))]
