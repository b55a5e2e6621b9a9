"""Fresh-instance reconcile: a new server joining a fleet with 100,000 active bans.

Redis (the run's own server) is emptied (FLUSHALL) and PYFILTER_BENCH_SYNC_SEED (100,000)
active bans are written with one `redis-cli --pipe` of the very commands the store's Lua
script runs for a ban in layout 2 (HSET pyfilter:records <id> <packed line>, HSET
pyfilter:offences, ZADD pyfilter:expiry, ZADD pyfilter:history:<id / 128>, then SET
pyfilter:next_id and pyfilter:layout); the packed line's shape is checked against one the
script wrote (propagation's first ban). A new instance C
(nftables, own network namespace) is started; the time runs from the moment the pyfilter
process starts (exec, after the namespace wrapper) until both: it has logged "pyfilter
ready", and `nft monitor` in C's namespace has shown all 100,000 addresses added to the
set. The kernel's count is then checked with `nft list set`. Target <= 5 s.

For information, a second fresh instance (C2) starts on the same data with no `nft
monitor` beside it; only its "pyfilter ready" is timed.
"""

import re
import time

from benchlib.base import BenchError, clock, ipv4, note, say
from benchlib.daemon import Daemon, fleet_config
from benchlib.figures import mib, read_status, verdict
from benchlib.firewall import Monitor, kernel_count
from benchlib.logs import syslog_now
from benchlib.netns import Netns
from benchlib.redis import resp
from benchlib import runner

from benchmarks.propagation import PREFIX, PROP_BASE, daemon_state

SUITE = "bench-sync"
ORDER = 20
TOOLS = (("nft", "nftables"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
         ("redis-server", "redis-server"), ("redis-cli", "redis-tools"))

RECONCILE_TARGET_S = 5.0
RECONCILE_TIMEOUT_S = 60.0
# The seed from 198.18.16.0 (at most 120,000 addresses: up to 198.19.215.x).
SEED_BASE = PROP_BASE | (16 << 8)


def measure(run, res):
    note(f"reconcile: seeding {run.seed:,} active bans into Redis")
    res["seed"] = seed_redis(run.redis, run.seed)
    res["rec"] = reconcile(run.pyfilter, run.tmp, run.redis, run.seed)


def shape(line):
    """What must be alike in two packed records of different bans: the number of fields,
    the rule, attempts and source (`sshd`, 1, `log` here), and that both times are
    numbers."""
    fields = line.split("\t")
    if len(fields) < 8:
        return None
    return (len(fields), fields[1], fields[2], fields[4],
            tuple(f.isdigit() for f in fields[5:7]))


def seed_redis(redis, count):
    """FLUSHALL, then `count` active bans written as the RECORD Lua script writes them."""
    redis.cli("FLUSHALL")
    now = int(time.time())
    expires = now + 86400            # the default ban_time, 1 day
    stamp = syslog_now().encode()
    t0 = clock()
    parts = []
    for i in range(count):
        ban_id = i + 1
        ip = ipv4(SEED_BASE + i)
        net = ip + "/32"
        reason = b"%s benchhost sshd[4242]: Failed password for root from %s port 50022 ssh2" \
            % (stamp, ip.encode())
        packed = b"\t".join([net.encode(), b"sshd", b"1", b"seed", b"log",
                              str(now).encode(), str(expires).encode(), reason])
        parts.append(resp("HSET", PREFIX + "records", ban_id, packed))
        parts.append(resp("HSET", PREFIX + "offences", net, f"{ban_id}:{now}"))
        parts.append(resp("ZADD", PREFIX + "expiry", expires, net))
        parts.append(resp("ZADD", f"{PREFIX}history:{ban_id // 128}", now, ban_id))
    parts.append(resp("SET", PREFIX + "next_id", count))
    parts.append(resp("SET", PREFIX + "layout", 2))
    data = b"".join(parts)
    gen_s = clock() - t0
    replies, errors, pipe_s = redis.pipe(data)
    got = {
        "records": int(redis.cli("HLEN", PREFIX + "records").strip() or 0),
        "expiry": int(redis.cli("ZCARD", PREFIX + "expiry").strip() or 0),
        "offences": int(redis.cli("HLEN", PREFIX + "offences").strip() or 0),
        "next_id": redis.cli("GET", PREFIX + "next_id").strip(),
        "fields": shape(redis.cli("HGET", PREFIX + "records", "1").rstrip("\n")),
    }
    return {"replies": replies, "errors": errors, "gen_s": gen_s, "pipe_s": pipe_s,
            "bytes": len(data), "got": got, "expires": expires}


def reconcile(pyfilter, tmp, redis, count):
    res = {}
    ns_c = Netns("C")
    res["ns"] = ns_c.id
    cfg_c, _ = fleet_config(tmp, "c", redis.url)
    mon = Monitor(ns=ns_c, target=count)
    mon.start()
    time.sleep(0.3)  # the monitor subscribes before C builds its table
    c = None
    try:
        if not mon.alive():
            raise BenchError(f"`nft monitor` in C's namespace exited: {mon.other[-3:]}")
        note(f"reconcile: starting C with {count:,} active bans in Redis")
        c = Daemon(pyfilter, cfg_c, "C", ns_c, keep=80)
        t_spawn = c.t_start
        deadline = t_spawn + RECONCILE_TIMEOUT_S
        ready_at = c.wait("ready", RECONCILE_TIMEOUT_S)
        full_at = mon.wait_full(deadline)
        res["exec_delay_ms"] = None if c.exec_at is None else (c.exec_at - t_spawn) * 1000
        start = c.exec_at if c.exec_at is not None else t_spawn
        res["start_from"] = "exec" if c.exec_at is not None else "spawn"
        res["ready_s"] = ready_at - start
        res["ready_from_spawn_s"] = ready_at - t_spawn
        res["monitor_seen"] = mon.count()
        res["all_read_s"] = None if full_at is None else full_at - start
        with mon.cond:
            gens = {g: n for g, n in mon.gen_elements.items()}
            res["table_s"] = None if mon.first_at is None else mon.first_at - start
            res["first_element_s"] = (min(mon.gen_first.values()) - start) \
                if mon.gen_first else None
            res["transactions"] = len(gens)
            # All the addresses in one transaction: the kernel held every one of them
            # once that transaction's first event could be read (events follow the
            # commit), so that moment bounds "all in the kernel" from above. Otherwise
            # (several transactions), the moment the last address was read does.
            if full_at is not None and len(gens) == 1:
                only = next(iter(gens))
                kernel_at = mon.gen_first[only]
                res["kernel_how"] = "one transaction: its first event"
            else:
                kernel_at = full_at
                res["kernel_how"] = f"{len(gens)} transactions: the last address read"
        res["full_s"] = None if kernel_at is None else kernel_at - start
        res["full_from_spawn_s"] = None if kernel_at is None else kernel_at - t_spawn
        if kernel_at is not None:
            res["total_s"] = max(ready_at, kernel_at) - start
            res["total_from_spawn_s"] = max(ready_at, kernel_at) - t_spawn
        m = re.search(r"(\d+) bans restored", c.line.get("ready") or "")
        res["restored_logged"] = int(m.group(1)) if m else None
        try:
            c.wait("caught_up", 20)
            res["caught_up_s"] = c.at["caught_up"] - start
            res["caught_up_line"] = c.line["caught_up"]
        except BenchError:
            res["caught_up_s"] = None
        st = read_status(c.proc.pid)
        res["rss_kb"], res["hwm_kb"] = st.get("VmRSS"), st.get("VmHWM")
        note("reconcile: counting the kernel's set (nft list set)")
        res["kernel_count"], res["count_query_s"] = kernel_count("nftables", ns_c, timeout=120)
        res["monitor_errors"] = list(mon.other)
    finally:
        if c is not None:
            res["c_alive"], res["c_exit"] = c.stop()
            res["c_lines"] = c.lines[-40:]
            res["c_errors"] = c.errors[-10:]
        mon.stop()
        ns_c.close()
    res["control"] = control_start(pyfilter, tmp, redis)
    return res


def control_start(pyfilter, tmp, redis):
    """For information: another fresh instance on the same data, with no `nft monitor`
    beside it (the monitor's work on 100,000 events shares the CPUs with the daemon).
    Only its 'pyfilter ready' is timed."""
    out = {}
    ns = Netns("C2")
    cfg, _ = fleet_config(tmp, "c2", redis.url)
    d = None
    try:
        note("reconcile: control start of a second fresh instance, without a monitor")
        d = Daemon(pyfilter, cfg, "C2", ns, keep=80)
        ready_at = d.wait("ready", RECONCILE_TIMEOUT_S)
        start = d.exec_at if d.exec_at is not None else d.t_start
        out["ready_s"] = ready_at - start
        m = re.search(r"(\d+) bans restored", d.line.get("ready") or "")
        out["restored_logged"] = int(m.group(1)) if m else None
    except BenchError as e:
        out["error"] = str(e).splitlines()[0]
    finally:
        if d is not None:
            d.stop()
        ns.close()
    return out


def report(run, res):
    problems, misses, warnings = run.report.problems, run.report.misses, run.report.warnings
    seed = run.seed
    say(f"2. Fresh-instance reconcile: {seed:,} active bans in Redis; C started -> "
        "'pyfilter ready' logged and all in C's kernel")
    seeded = res.get("seed")
    if seeded is not None:
        g = seeded["got"]
        say(f"   seed: {seeded['bytes'] / 1e6:.1f} MB of RESP generated in "
            f"{seeded['gen_s']:.2f} s, `redis-cli --pipe` {seeded['pipe_s']:.2f} s "
            f"({seeded['replies']:,} replies, {seeded['errors']} errors); Redis: records "
            f"{g['records']:,}, expiry {g['expiry']:,}, offences {g['offences']:,}, next_id "
            f"{g['next_id']}")
        say(f"   seeded records: nets {ipv4(SEED_BASE)}/32 .. {ipv4(SEED_BASE + seed - 1)}/32, "
            "rule sshd, source log, server 'seed', banned now, expiring in 1 day")
        lua_fields = None
        prop = run.results.get("propagation")
        if prop and "propagation" not in run.errors and prop.get("example_record"):
            lua_fields = shape("\n".join(prop["example_record"]))
        if lua_fields:
            same = lua_fields == g["fields"]
            say(f"   packed record {'matches' if same else 'DIFFERS from'} the shape of a "
                f"ban recorded by A's Lua script ({lua_fields})")
            if not same:
                problems.append(f"reconcile: seeded fields {g['fields']} differ from the "
                                f"Lua script's {lua_fields}")
        if seeded["errors"] or g["records"] != seed or g["expiry"] != seed \
                or g["offences"] != seed:
            problems.append(f"reconcile: the seed did not load cleanly ({seeded['errors']} "
                            f"errors, records {g['records']}, expiry {g['expiry']}, "
                            f"offences {g['offences']})")
    if runner.could_not_run(run, "reconcile"):
        pass
    elif res.get("rec") is not None:
        r = res["rec"]
        full, ready = r.get("full_s"), r.get("ready_s")
        total_s = r.get("total_s")
        rec_ok = _ok(run, r)

        def f3(v):
            return "-" if v is None else f"{v:.3f} s"
        say(f"   {'':52}{'from exec':>11}{'from spawn':>12}")
        say(f"   {'first nft event (table built by the daemon)':52}{f3(r.get('table_s')):>11}")
        say(f"   {'all ' + format(seed, ',') + ' in the kernel (upper bound, see below)':52}"
            f"{f3(full):>11}{f3(r.get('full_from_spawn_s')):>12}")
        say(f"   {'pyfilter ready logged':52}{f3(ready):>11}"
            f"{f3(r.get('ready_from_spawn_s')):>12}")
        say(f"   {'both (the measure)':52}{f3(total_s):>11}"
            f"{f3(r.get('total_from_spawn_s')):>12}   target <= "
            f"{RECONCILE_TARGET_S:g} s   {verdict(bool(rec_ok))}")
        say(f"   {'(info) last element event read by the monitor':52}"
            f"{f3(r.get('all_read_s')):>11}   (nft monitor printing {seed:,} lines)")
        say(f"   'in the kernel': the {seed:,} addresses came in "
            f"{r.get('transactions')} nft transaction(s); measured as {r.get('kernel_how')}")
        say("   (the kernel sends a transaction's events after committing it, so the whole "
            "batch was in by then).")
        say(f"   'from exec': from the moment the pyfilter process image starts (the guard "
            f"execs it {r['exec_delay_ms']:.0f} ms after")
        say("   the spawn of nsenter + the namespace guard); 'from spawn' includes that "
            "wrapper.")
        say(f"   C logged {r.get('restored_logged')} bans restored; "
            f"monitor saw {r.get('monitor_seen'):,} distinct addresses; "
            f"`nft list set` afterwards: {r.get('kernel_count')} elements "
            f"(query {r.get('count_query_s', 0):.2f} s, not timed); "
            f"C RSS {mib(r.get('rss_kb'))} (peak {mib(r.get('hwm_kb'))})")
        ctl = r.get("control") or {}
        if "ready_s" in ctl:
            say(f"   control (info): a second fresh instance, no nft monitor running: ready "
                f"{ctl['ready_s']:.3f} s from exec, {ctl.get('restored_logged')} bans restored")
        elif ctl.get("error"):
            warnings.append(f"reconcile: the control start failed: {ctl['error']}")
        if r.get("caught_up_s") is not None:
            say(f"   after ready, the sync link's reconcile: "
                f"'{r['caught_up_line'].split('] ', 1)[-1]}' at {r['caught_up_s']:.3f} s")
        else:
            warnings.append("reconcile: C never logged 'caught up with the fleet' "
                            "(sync link reconcile) within 20 s of ready")
        daemon_state(run.report, "reconcile", r, "c")
        if full is None:
            problems.append(f"reconcile: `nft monitor` saw only {r.get('monitor_seen'):,} of "
                            f"{seed:,} elements within {RECONCILE_TIMEOUT_S:g} s"
                            + (f" (monitor stderr: {r['monitor_errors'][-1]})"
                               if r.get("monitor_errors") else ""))
        if r.get("kernel_count") != seed:
            problems.append(f"reconcile: C's kernel holds {r.get('kernel_count')} elements, "
                            f"{seed:,} were seeded")
        if r.get("restored_logged") != seed:
            problems.append(f"reconcile: C says {r.get('restored_logged')} bans restored, "
                            f"{seed:,} were seeded")
        if total_s is not None and total_s > RECONCILE_TARGET_S:
            misses.append(f"reconcile {total_s:.2f} s (target <= {RECONCILE_TARGET_S:g} s)")
        for line in r.get("c_errors", [])[:3]:
            warnings.append(f"reconcile: C logged: {line}")
    say()


def _ok(run, r):
    total_s = r.get("total_s")
    return total_s is not None and total_s <= RECONCILE_TARGET_S \
        and r.get("kernel_count") == run.seed


def summary(run, res):
    rec = res.get("rec")
    if rec is not None and "reconcile" not in run.errors and rec.get("total_s") is not None:
        say(f"  reconcile    {run.seed:,} bans: ready {rec['ready_s']:.3f} s, all in the "
            f"kernel {rec['full_s']:.3f} s -> {rec['total_s']:.3f} s   target <= "
            f"{RECONCILE_TARGET_S:g} s   {verdict(bool(_ok(run, rec)))}")
    else:
        say("  reconcile    no measurement (see problems)")


def daemon_logs(run, res):
    if "reconcile" in run.errors or res.get("rec") is None:
        return []
    return [("reconcile", "C", res["rec"].get("c_lines"))]
