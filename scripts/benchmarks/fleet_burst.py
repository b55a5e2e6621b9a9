"""A burst across the fleet: 10,000 bans on one server, until every server holds them.

On the fleet that fleet_propagation started (PYFILTER_BENCH_FLEET_SERVERS, 50), 10,000
`Failed password` lines for distinct addresses (198.19.0.0/18) are appended to the first
server's log in one write. The time runs from just before that write until every
server's `nft monitor` (the first one's too) has read all 10,000 addresses; no target is
set. On one machine the harness's own reading (fifty monitors and fifty daemon logs,
a million lines in all, in Python) shares the cores with the fleet, so the CPU the
servers themselves spent (utime + stime, with their `nft` children) is given too.
Then Redis's memory per ban, as pyfilter itself wrote them (packed record, indexes, past
bans of the network, real sshd lines as reasons): `used_memory` after, less before, over
the bans.
"""

import os
import statistics

from benchlib.base import BenchError, clock, ipv4, note, say
from benchlib.figures import cpu_ticks
from benchlib.logs import Appender, fail_line

SUITE = "bench-fleet"
ORDER = 20
TOOLS = ()

BURST = 10_000
TIMEOUT_S = 120.0
BASE = (198 << 24) | (19 << 16)
PREFIX = "pyfilter:"


def used_memory(redis):
    for line in redis.cli("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise BenchError("INFO memory without used_memory")


def measure(run, res):
    fleet = getattr(run, "fleet", None)
    if fleet is None:
        raise BenchError("needs the fleet of fleet_propagation (run both)")
    mons = fleet.monitors
    before = [m.count() for m in mons]
    active_before = int(run.redis.cli("ZCARD", PREFIX + "expiry").strip() or 0)
    mem_before = used_memory(run.redis)
    data = "".join(fail_line(ipv4(BASE + i), i) for i in range(BURST)).encode()
    pids = [m[3].proc.pid for m in fleet.members]
    ticks_before = [sum(cpu_ticks(p)) for p in pids]
    note(f"burst: {BURST:,} bans on {fleet.members[0][0]}, to {len(mons)} servers")
    with Appender(fleet.log(0)) as log:
        t0 = clock()
        log.write(data)
    done = {}
    while len(done) < len(mons) and clock() - t0 < TIMEOUT_S:
        for k, m in enumerate(mons):
            if k not in done and m.count() >= before[k] + BURST:
                done[k] = clock() - t0
        if len(done) < len(mons):
            with mons[0].cond:
                mons[0].cond.wait(0.05)
    res["per_server_s"] = sorted(done.values())
    hz = os.sysconf("SC_CLK_TCK")
    spent = sorted((sum(cpu_ticks(p)) - b) / hz for p, b in zip(pids, ticks_before))
    res["cpu_origin_s"] = (sum(cpu_ticks(pids[0])) - ticks_before[0]) / hz
    res["cpu_median_s"] = statistics.median(spent)
    res["cpu_total_s"] = sum(spent)
    res["all_s"] = max(done.values()) if len(done) == len(mons) else None
    res["missing"] = {fleet.members[k][0]: mons[k].count() - before[k]
                      for k in range(len(mons)) if k not in done}
    active = int(run.redis.cli("ZCARD", PREFIX + "expiry").strip() or 0)
    res["recorded"] = active - active_before
    mem_after = used_memory(run.redis)
    res["bytes_per_ban"] = (mem_after - mem_before) / max(1, res["recorded"])
    last = run.redis.cli("GET", PREFIX + "next_id").strip()
    res["sample_record"] = run.redis.cli("HSTRLEN", PREFIX + "records", last).strip()


def report(run, res):
    say(f"Burst: {BURST:,} bans on one server, to every server")
    say("-" * 78)
    if "per_server_s" not in res:
        say("   did not run")
        return
    if res["all_s"] is None:
        run.report.problems.append(f"burst: not every server got the {BURST:,} bans within "
                                   f"{TIMEOUT_S:g} s: {dict(list(res['missing'].items())[:5])}")
        say(f"   not every server got them: {res['missing']}")
    else:
        per = res["per_server_s"]
        say(f"   in every server's kernel after {res['all_s']:.2f} s (median server "
            f"{statistics.median(per):.2f} s, first {per[0]:.2f} s)")
    say(f"   CPU the servers spent: {res['cpu_origin_s']:.2f} s on the one that banned, "
        f"{res['cpu_median_s']:.2f} s on a median other, {res['cpu_total_s']:.1f} s in all "
        f"({len(per) if res['all_s'] is not None else '?'} servers)")
    say(f"   Redis: {res['recorded']:,} bans recorded, {res['bytes_per_ban']:.0f} bytes per "
        f"ban (used_memory; one packed record: {res['sample_record']} bytes)")
    say()


def summary(run, res):
    if res.get("all_s") is not None:
        say(f"  burst        {BURST:,} bans on one server in every kernel in "
            f"{res['all_s']:.2f} s ({res['cpu_median_s']:.2f} s of CPU a server); Redis "
            f"{res['bytes_per_ban']:.0f} bytes per ban")
