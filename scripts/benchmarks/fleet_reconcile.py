"""A new server facing a million active bans, and Redis's memory per ban.

The fleet of fleet_propagation is stopped first. Redis is emptied (FLUSHALL) and
PYFILTER_BENCH_FLEET_SEED (1,000,000) active bans are written with `redis-cli --pipe`,
100,000 at a time, as the store's RECORD script writes them, with a real sshd line as
reason: in layout 2 (the ban packed in one line of `records`, `offences`, `expiry`,
the `history:<id / 128>` buckets), and for comparison in layout 1, the layout of stores written
before it (a hash per ban, a `bans_of` sorted set per network with its time to live),
with Redis's defaults and with `hash-max-listpack-value 1024`. Redis's `used_memory`
before and after gives the memory per active ban (target <= 512 bytes, layout 2). The
fresh servers start on the layout-2 seed, the last.

Then a fresh server (nftables, its own network namespace) starts on that Redis: the time
runs from its exec until it logs "pyfilter ready", which it does once every active ban
is in its kernel (the restore is synchronous); its peak memory is VmHWM, read once it is
ready; the kernel's set is counted afterwards with `nft list set`. Targets: <= 20 s and
<= 256 MiB. For comparison a second fresh server starts with `firewall: none` (the
reading of Redis alone).
"""

import re
import time

from benchlib.base import BenchError, ipv4, note, say
from benchlib.daemon import Daemon, fleet_config
from benchlib.figures import mib, read_status, verdict
from benchlib.firewall import kernel_count
from benchlib.logs import syslog_now
from benchlib.netns import Netns
from benchlib.redis import resp

SUITE = "bench-fleet"
ORDER = 30
TOOLS = (("nft", "nftables"), ("redis-cli", "redis-tools"))

READY_TARGET_S = 20.0
MEMORY_TARGET_MIB = 256
PER_BAN_TARGET = 512
TIMEOUT_S = 180.0
CHUNK = 100_000
PREFIX = "pyfilter:"
BASE = 10 << 24       # 10.0.0.0/8: a million addresses, only text in Redis and sets
# (label, layout, hash-max-listpack-value), in the order seeded.
SEEDS = (("default", 1, "64"), ("listpack", 1, "1024"), ("layout2", 2, "64"))


def measure(run, res):
    fleet = getattr(run, "fleet", None)
    if fleet is not None:
        fleet.stop()
        run.fleet = None
    from benchmarks.fleet_burst import used_memory
    # Layout 1 with Redis's defaults, then with hash-max-listpack-value 1024, which lets
    # a ban's hash (its reason is a log line, longer than the default 64 bytes) stay a
    # listpack; then layout 2 with Redis's defaults, which the fresh servers start on.
    for label, layout, listpack in SEEDS:
        run.redis.cli("FLUSHALL")
        run.redis.cli("CONFIG", "SET", "hash-max-listpack-value", listpack)
        before = used_memory(run.redis)
        note(f"reconcile: seeding {run.seed:,} active bans into Redis (layout {layout}, "
             f"hash-max-listpack-value {listpack})")
        res[f"seed_s_{label}"] = seed(run.redis, run.seed, layout)
        active = int(run.redis.cli("ZCARD", PREFIX + "expiry").strip() or 0)
        if active != run.seed:
            raise BenchError(f"seeded {run.seed:,} bans but Redis holds {active:,}")
        res[f"bytes_per_ban_{label}"] = (used_memory(run.redis) - before) / run.seed
        shared = ("active", "expiry", "history") if layout == 1 else (
            "records", "offences", "expiry")
        usage = {k: run.redis.cli("MEMORY", "USAGE", PREFIX + k, "SAMPLES", "0").strip()
                 for k in shared}
        if layout == 2:
            # The history's buckets (128 ids each) are alike: one full one, times as many.
            one = int(run.redis.cli("MEMORY", "USAGE", PREFIX + "history:1").strip() or 0)
            usage["history"] = one * -(-run.seed // 128)
        else:
            usage["ban:1"] = run.redis.cli("MEMORY", "USAGE", PREFIX + "ban:1").strip()
            usage["bans_of"] = run.redis.cli("MEMORY", "USAGE",
                                             f"{PREFIX}bans_of:{ipv4(BASE)}/32").strip()
        res[f"usage_{label}"] = usage
    run.redis.cli("CONFIG", "SET", "hash-max-listpack-value", "64")
    res["bytes_per_ban"] = res["bytes_per_ban_layout2"]
    for backend in ("nftables", "none"):
        res[backend] = fresh_server(run, backend)


def seed(redis, count, layout):
    """`count` active bans written as RECORD writes them in `layout`; seconds taken."""
    now = int(time.time())
    expires = now + 86400
    stamp = syslog_now().encode()
    took = 0.0
    for first in range(0, count, CHUNK):
        parts = []
        for i in range(first, min(count, first + CHUNK)):
            ban_id, ip = i + 1, ipv4(BASE + i)
            net = ip + "/32"
            reason = b"%s benchhost sshd[4242]: Failed password for root from %s port " \
                b"50022 ssh2" % (stamp, ip.encode())
            if layout == 1:
                parts.append(resp("HSET", f"{PREFIX}ban:{ban_id}", "net", net, "rule",
                                  "sshd", "reason", reason, "attempts", 1, "server", "seed",
                                  "source", "log", "banned_at", now, "expires_at", expires))
                parts.append(resp("ZADD", f"{PREFIX}bans_of:{net}", now, ban_id))
                parts.append(resp("EXPIRE", f"{PREFIX}bans_of:{net}", 90 * 86400))
                parts.append(resp("HSET", PREFIX + "active", net, ban_id))
                parts.append(resp("ZADD", PREFIX + "history", now, ban_id))
            else:
                packed = b"\t".join([net.encode(), b"sshd", b"1", b"seed", b"log",
                                      str(now).encode(), str(expires).encode(), reason])
                parts.append(resp("HSET", PREFIX + "records", ban_id, packed))
                parts.append(resp("HSET", PREFIX + "offences", net, f"{ban_id}:{now}"))
                parts.append(resp("ZADD", f"{PREFIX}history:{ban_id // 128}", now, ban_id))
            parts.append(resp("ZADD", PREFIX + "expiry", expires, net))
        _, errors, s = redis.pipe(b"".join(parts), timeout=600)
        if errors:
            raise BenchError(f"seeding: {errors} Redis errors")
        took += s
    redis.cli("SET", PREFIX + "next_id", count)
    redis.cli("SET", PREFIX + "layout", layout)
    return took


def fresh_server(run, backend):
    out = {}
    ns = Netns(f"fresh-{backend}")
    name = f"fresh-{backend}"
    cfg, _ = fleet_config(run.tmp, name, run.redis.url)
    with open(cfg) as f:
        text = f.read().replace("firewall: { backend: nftables }",
                                f"firewall: {{ backend: {backend} }}")
    with open(cfg, "w") as f:
        f.write(text)
    d = None
    try:
        note(f"reconcile: a fresh server ({backend}) facing {run.seed:,} bans")
        d = Daemon(run.pyfilter, cfg, name, ns, keep=40)
        ready_at = d.wait("ready", TIMEOUT_S)
        start = d.exec_at if d.exec_at is not None else d.t_start
        out["ready_s"] = ready_at - start
        st = read_status(d.proc.pid)
        out["hwm_kb"], out["rss_kb"] = st.get("VmHWM"), st.get("VmRSS")
        m = re.search(r"(\d+) bans restored", d.line.get("ready") or "")
        out["restored"] = int(m.group(1)) if m else None
        if backend == "nftables":
            out["kernel"], out["count_s"] = kernel_count("nftables", ns, timeout=600)
    finally:
        if d is not None:
            out["alive"], out["exit"] = d.stop()
            out["lines"] = d.lines[-20:]
        ns.close()
    return out


def report(run, res):
    say(f"A new server facing {run.seed:,} active bans")
    say("-" * 78)
    if "bytes_per_ban" not in res:
        say("   did not run")
        return
    n = run.seed
    for label, what in (("layout2", "layout 2, Redis's defaults"),
                        ("default", "layout 1, Redis's defaults"),
                        ("listpack", "layout 1, hash-max-listpack-value 1024")):
        per = res[f"bytes_per_ban_{label}"]
        u = res[f"usage_{label}"]
        target = (f"   target {PER_BAN_TARGET}: {verdict(per <= PER_BAN_TARGET)}"
                  if label == "layout2" else "")
        say(f"   Redis ({what}): {per:.0f} bytes per active ban (used_memory){target}")
        keys = [k for k in ("records", "offences", "active", "expiry", "history") if k in u]
        per_key = ", ".join(f"{k} {int(u[k] or 0) / n:.0f} B" for k in keys)
        if "ban:1" in u:
            say(f"      one ban hash {u['ban:1']} B, its bans_of {u['bans_of']} B; "
                f"per ban: {per_key}")
        else:
            say(f"      per ban: {per_key}")
    if res["bytes_per_ban_layout2"] > PER_BAN_TARGET:
        run.report.misses.append(
            f"Redis {res['bytes_per_ban_layout2']:.0f} bytes per ban > {PER_BAN_TARGET}")
    for backend in ("nftables", "none"):
        r = res.get(backend) or {}
        if "ready_s" not in r:
            run.report.problems.append(f"reconcile ({backend}): the server never got ready")
            continue
        hwm = (r.get("hwm_kb") or 0) / 1024
        line = (f"   {backend:9s} ready with {r.get('restored') or 0:,} bans in "
                f"{r['ready_s']:.1f} s, peak memory {hwm:.0f} MiB")
        if backend == "nftables":
            ok = r["ready_s"] <= READY_TARGET_S and hwm <= MEMORY_TARGET_MIB
            line += (f"; kernel holds {r.get('kernel')}   targets {READY_TARGET_S:g} s, "
                     f"{MEMORY_TARGET_MIB} MiB: {verdict(ok)}")
            if not ok:
                run.report.misses.append(f"reconcile {r['ready_s']:.1f} s / {hwm:.0f} MiB")
            if r.get("kernel") != n:
                run.report.problems.append(f"reconcile: the kernel holds {r.get('kernel')} "
                                           f"of {n:,} bans")
        say(line)
    say()


def summary(run, res):
    r = res.get("nftables") or {}
    if "ready_s" in r:
        say(f"  reconcile    {run.seed:,} bans: ready in {r['ready_s']:.1f} s, peak "
            f"{(r.get('hwm_kb') or 0) / 1024:.0f} MiB; Redis "
            f"{res['bytes_per_ban_layout2']:.0f} bytes per ban (layout 1: "
            f"{res['bytes_per_ban_default']:.0f}, {res['bytes_per_ban_listpack']:.0f} with "
            f"hash-max-listpack-value 1024)")
