"""Propagation across a fleet: one server's log line, until every other server's kernel.

PYFILTER_BENCH_FLEET_SERVERS (50) servers, each in its own network namespace with the
nftables backend and an `nft monitor` beside it, on the run's redis-server (unix socket),
failed_attempts 1. For each of PYFILTER_BENCH_FLEET_BANS (200) distinct addresses one
`Failed password` line is appended to the log of one server (each server in turn); the
time runs from just before that write until the address was read from the monitor of
the last of the other servers (each monitor line is timestamped when read: an upper
bound). Sequential: the next ban is written 2 ms after the previous one reached every
server. 5 warm-up bans are not counted. Target: p99 <= 50 ms to all servers.
"""

import statistics
import time

from benchlib.base import BenchError, clock, ipv4, note, say
from benchlib.figures import mib, pct, verdict
from benchlib.fleet import Fleet
from benchlib.logs import Appender, fail_line

SUITE = "bench-fleet"
ORDER = 10
TOOLS = (("nft", "nftables"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
         ("redis-server", "redis-server"), ("redis-cli", "redis-tools"))

P99_TARGET_MS = 50.0
BAN_TIMEOUT_S = 5.0
WARMUP = 5
# 198.18.0.0/15, the benchmarking range: propagation from 198.18.0.1, warm-up 198.18.15.x.
BASE = (198 << 24) | (18 << 16)
WARMUP_BASE = BASE | (15 << 8)


def measure(run, res):
    run.redis.cli("FLUSHALL")
    run.fleet = Fleet(run.pyfilter, run.tmp, run.redis, run.servers)
    propagate(run, run.fleet, res, lambda k, ip, deadline: run.fleet.monitors[k].wait_ban(
        ip, deadline))


def propagate(run, fleet, res, arrival):
    """The propagation loop on `fleet`; `arrival(k, ip, deadline)` is when server k got
    `ip` (clock()), or None."""
    res["servers"] = run.servers
    res["start_s"] = fleet.start_s
    res["all_ms"], res["each_ms"], res["timeouts"] = [], [], []

    def one(ip, n, origin):
        with Appender(fleet.log(origin)) as log:
            t0 = clock()
            log.write(fail_line(ip, n).encode())
        times = []
        for k in range(len(fleet.members)):
            if k == origin:
                continue
            t = arrival(k, ip, t0 + BAN_TIMEOUT_S)
            if t is None:
                return None, times
            times.append((t - t0) * 1000)
        return max(times), times

    for i in range(WARMUP):
        if one(ipv4(WARMUP_BASE + 1 + i), 90000 + i, i % len(fleet.members))[0] is None:
            raise BenchError(f"warm-up ban {i} did not reach every server within "
                             f"{BAN_TIMEOUT_S:g} s")
    note(f"propagation: {run.bans} bans, each to {run.servers - 1} other servers")
    t_begin = clock()
    for i in range(run.bans):
        ip = ipv4(BASE + 1 + i)
        worst, each = one(ip, i, i % len(fleet.members))
        if worst is None:
            res["timeouts"].append(ip)
            if len(res["timeouts"]) >= 5:
                res["aborted"] = "5 bans never reached every server"
                break
        else:
            res["all_ms"].append(worst)
            res["each_ms"].extend(each)
        time.sleep(0.002)
    res["loop_s"] = clock() - t_begin
    rss = fleet.rss_kb()
    res["rss_median_kb"] = statistics.median(rss) if rss else None


def report(run, res, backend="nftables"):
    say(f"Propagation to every server ({res.get('servers')} servers, {backend}, one Redis)")
    say("-" * 78)
    if "all_ms" not in res:
        say("   did not run")
        return
    lats = sorted(res["all_ms"])
    each = sorted(res["each_ms"])
    say(f"   fleet started and subscribed in {res['start_s']:.1f} s")
    if lats:
        ok = pct(lats, 99) <= P99_TARGET_MS
        say(f"   to the LAST server: p50 {pct(lats, 50):.1f} ms, p99 {pct(lats, 99):.1f} ms, "
            f"max {lats[-1]:.1f} ms over {len(lats)} bans   target p99 <= "
            f"{P99_TARGET_MS:g} ms: {verdict(ok)}")
        say(f"   to each server:    p50 {pct(each, 50):.1f} ms, p99 {pct(each, 99):.1f} ms "
            f"({len(each)} arrivals)")
        if not ok and backend == "nftables":
            run.report.misses.append(f"propagation p99 {pct(lats, 99):.1f} ms > "
                                     f"{P99_TARGET_MS:g} ms")
    if res["timeouts"]:
        run.report.problems.append(f"propagation: {len(res['timeouts'])} bans never reached "
                                   f"every server: {res['timeouts'][:5]}")
    if res.get("rss_median_kb"):
        say(f"   daemon memory (median over the fleet): {mib(res['rss_median_kb'])}")
    say()


def summary(run, res, what="propagation"):
    lats = sorted(res.get("all_ms") or [])
    if lats:
        say(f"  {what:12s} {res['servers']} servers: p50 {pct(lats, 50):.1f} ms, "
            f"p99 {pct(lats, 99):.1f} ms to the last one (target 50 ms)")
