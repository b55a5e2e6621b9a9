"""Restore: a daemon starting with 100,000 active bans in its SQLite store.

For each firewall backend, in a fresh network namespace (`unshare --net`): 100,000 active
bans inserted into the SQLite store (created by a first `pyfilter list`); the time from
starting `pyfilter run` until it logs "pyfilter ready", then a check that the kernel
holds 100,000. Target <= 2 s (ipset, nftables); iptables reported without a target.
"""

import os
import re
import sqlite3
import time

from benchlib.base import BenchError, clock, ipv4, note, say
from benchlib.daemon import Daemon, sshd_config
from benchlib.figures import mib, read_status, verdict
from benchlib.firewall import BACKENDS, kernel_count
from benchlib.logs import empty_log
from benchlib.netns import driver_problems, in_own_netns
from benchlib.procs import run_quiet

SUITE = "bench"
ORDER = 40
TOOLS = (("iptables", "iptables"), ("ipset", "ipset"), ("nft", "nftables"))

RESTORE_COUNT = 100_000
RESTORE_TARGET_S = {"ipset": 2.0, "nftables": 2.0}        # iptables: reported, no target
RESTORE_TIMEOUT_S = {"iptables": 120.0, "ipset": 30.0, "nftables": 30.0}
SEED_BASE = (10 << 24) | (1 << 16)         # 10.1.0.0 ...: only text, never a target


def measure(run, res):
    for backend in BACKENDS:
        note(f"restore/{backend}: {RESTORE_COUNT:,} bans at start")
        res[backend] = in_own_netns(
            "restore", run.tmp, 120 + 2 * RESTORE_TIMEOUT_S[backend], phase="restore",
            backend=backend, pyfilter=run.pyfilter, disable=run.disable)


def seed_store(pyfilter, cfg, db, count):
    rc, _, err = run_quiet([pyfilter, "-c", cfg, "list"])
    if rc != 0 or not os.path.exists(db):
        raise BenchError(f"`pyfilter list` did not create the store (exit {rc}): {err.strip()}")
    now = int(time.time())
    con = sqlite3.connect(db, timeout=30)
    try:
        with con:
            con.executemany(
                "INSERT INTO bans (net, rule, reason, attempts, server, source, banned_at, "
                "expires_at) VALUES (?, 'sshd', 'seed', 5, 'bench', 'log', ?, ?)",
                ((f"{ipv4(SEED_BASE + i)}/32", now, now + 86400) for i in range(count)))
        active = con.execute("SELECT count(*) FROM bans WHERE lifted_at IS NULL").fetchone()[0]
    finally:
        con.close()
    return active


def in_netns(ctx, res):
    backend = ctx["backend"]
    log_path = empty_log(os.path.join(ctx["tmp"], "log", "auth.log"))
    cfg = sshd_config(ctx["tmp"], log_path, backend, disable=ctx["disable"])
    db = os.path.join(ctx["tmp"], "db", "pyfilter.db")
    t = clock()
    res["seeded"] = seed_store(ctx["pyfilter"], cfg, db, RESTORE_COUNT)
    note(f"restore/{backend}: {res['seeded']:,} active bans seeded in "
         f"{clock() - t:.1f} s; starting the daemon")
    daemon = Daemon(ctx["pyfilter"], cfg)
    res["daemon"] = daemon
    res["ready_s"] = daemon.ready_after(RESTORE_TIMEOUT_S[backend])
    m = re.search(r"(\d+) bans restored", daemon.line.get("ready") or "")
    res["restored_logged"] = int(m.group(1)) if m else None
    res["kernel_count"], res["count_query_s"] = kernel_count(backend)
    res["daemon_rss_kb"] = read_status(daemon.pid).get("VmRSS")


def report(run, res):
    problems, misses = run.report.problems, run.report.misses
    say(f"4. Restore: {RESTORE_COUNT:,} active bans seeded in SQLite; `pyfilter run` start "
        "-> 'pyfilter ready' logged")
    say(f"   {'backend':10}{'ready (s)':>11}{'logged':>10}{'in kernel':>11}{'count query':>13}"
        f"{'RSS':>11}{'target':>9}")
    for b in BACKENDS:
        r = res[b]
        target = RESTORE_TARGET_S.get(b)
        tgt = f"<= {target:g} s" if target else "none"
        if driver_problems(run.report, f"restore/{b}", r):
            say(f"   {b:10}   could not run: {r['error'].splitlines()[0]}")
            continue
        ready = r["ready_s"]
        held = r.get("kernel_count")
        ok = target is None or ready <= target
        say(f"   {b:10}{ready:11.3f}{r.get('restored_logged') or 0:>10,}"
            f"{held if held is not None else -1:>11,}{r['count_query_s']:>12.2f}s"
            f"{mib(r.get('daemon_rss_kb')):>11}{tgt:>9}"
            + (f"   {verdict(ok)}" if target else ""))
        if held != RESTORE_COUNT:
            problems.append(f"restore/{b}: the kernel holds {held} bans after restoring "
                            f"{RESTORE_COUNT:,}")
        if r.get("restored_logged") != RESTORE_COUNT:
            problems.append(f"restore/{b}: the daemon says {r.get('restored_logged')} bans "
                            f"restored, {RESTORE_COUNT:,} were seeded")
        if target and ready > target:
            misses.append(f"restore ({b}) {ready:.2f} s (target <= {target:g} s)")
    say()


def summary(run, res):
    for b in BACKENDS:
        r = res[b]
        if "error" in r:
            say(f"  restore   {b:9} no measurement (see problems)")
            continue
        ready, held, target = r["ready_s"], r.get("kernel_count"), RESTORE_TARGET_S.get(b)
        ok = target is None or ready <= target
        say(f"  restore   {b:9} {ready:6.3f} s, "
            f"{'?' if held is None else format(held, ',')} in the kernel   "
            + (f"target <= {target:g} s   {verdict(ok)}" if target else "no target"))


def daemon_logs(run, res):
    return [(f"restore/{b}", None, res[b].get("daemon_stderr")) for b in BACKENDS]
