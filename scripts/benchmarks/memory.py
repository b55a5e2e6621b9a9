"""Memory and idle CPU of the daemon: idle, then tracking a million addresses.

One daemon (nftables backend, own network namespace, only the sshd rule):
  - its VmRSS idle after start;
  - idle CPU: its utime+stime (all threads, /proc/PID/stat) over PYFILTER_BENCH_IDLE
    seconds (default 60) without log activity, with its context switches. Target < 0.05 s;
  - then 1,000,000 lines from distinct addresses appended (failed_attempts 1000, so none
    is banned); once the store's saved read position equals the file size and the RSS is
    steady, and 25 s more (the daemon gives back a burst's memory after 20 s of quiet),
    its VmRSS again (the figure right after the flood is printed beside it): (RSS_1M - RSS_idle) / 1e6 bytes per tracked address (target:
    tens of MB for the million, i.e. <= 100 bytes each).
The report's memory section also shows the daemon's peak after the iptables latency test
and the scan's peak RSS (ru_maxrss), when those ran.
"""

import os
import re
import sqlite3
import time

from benchlib.base import clock, ipv4, note, say
from benchlib.daemon import Daemon, sshd_config
from benchlib.figures import cpu_ticks, ctx_switches, mib, read_status, verdict
from benchlib.logs import Appender, empty_log, fail_line, syslog_now
from benchlib.netns import driver_problems, in_own_netns

SUITE = "bench"
ORDER = 50
TOOLS = (("nft", "nftables"),)

MEMORY_BACKEND = "nftables"
# Longer than the daemon's 20 s of quiet before it gives memory back.
SETTLE_S = 25
MEMORY_ADDRESSES = 1_000_000
MEMORY_FAILED_ATTEMPTS = 1000
MEMORY_TARGET_BYTES = 100     # per tracked address: 1M addresses in tens of MB
MEMORY_TIMEOUT_S = 120.0
IDLE_CPU_TARGET_S = 0.05
MEMORY_BASE = (10 << 24) | (64 << 16)      # 10.64.0.0 ...: only text, never a target


def measure(run, res):
    note(f"memory/idle: {MEMORY_BACKEND} backend, then {MEMORY_ADDRESSES:,} addresses")
    res.update(in_own_netns(
        "memory", run.tmp, 120 + run.idle + MEMORY_TIMEOUT_S, phase="memory",
        backend=MEMORY_BACKEND, pyfilter=run.pyfilter, disable=run.disable, idle=run.idle))


def wait_read_all(daemon, db, log_path, size, timeout):
    """Waits until the store's saved position of `log_path` is `size` (the daemon has
    handled every line: positions follow the attempts they cover, and are flushed a
    second later) and the daemon's RSS has stopped growing. Returns seconds or None."""
    t0 = clock()
    rss_hist = []
    while clock() - t0 < timeout:
        time.sleep(0.5)
        if daemon.proc.poll() is not None:
            return None
        rss_hist.append(read_status(daemon.pid).get("VmRSS"))
        offset = None
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                row = con.execute("SELECT offset FROM positions WHERE path = ?",
                                  (log_path,)).fetchone()
                offset = row[0] if row else None
            finally:
                con.close()
        except sqlite3.Error:
            pass
        if offset == size and len(rss_hist) >= 3 and len(set(rss_hist[-3:])) == 1:
            return clock() - t0
    return None


def in_netns(ctx, res):
    backend = ctx["backend"]
    log_path = empty_log(os.path.join(ctx["tmp"], "log", "auth.log"))
    cfg = sshd_config(ctx["tmp"], log_path, backend, MEMORY_FAILED_ATTEMPTS, ctx["disable"])
    db = os.path.join(ctx["tmp"], "db", "pyfilter.db")
    daemon = Daemon(ctx["pyfilter"], cfg)
    res["daemon"] = daemon
    res["startup_ms"] = daemon.ready_after(15) * 1000
    time.sleep(1.0)
    res["rss_idle_kb"] = read_status(daemon.pid).get("VmRSS")

    idle = ctx["idle"]
    note(f"idle: {idle} s without log activity")
    tick = os.sysconf("SC_CLK_TCK")
    c0, k0, s0 = cpu_ticks(daemon.pid), clock(), ctx_switches(daemon.pid)
    time.sleep(idle)
    c1, k1, s1 = cpu_ticks(daemon.pid), clock(), ctx_switches(daemon.pid)
    res["idle_wall_s"] = k1 - k0
    res["idle_cpu_s"] = (c1[0] - c0[0]) / tick
    res["idle_child_cpu_s"] = (c1[1] - c0[1]) / tick
    res["idle_switches"] = s1 - s0
    res["tick_s"] = 1 / tick

    note(f"memory: appending {MEMORY_ADDRESSES:,} lines from distinct addresses")
    stamp = syslog_now()
    t = clock()
    with Appender(log_path) as log:
        step = 100_000
        for start in range(0, MEMORY_ADDRESSES, step):
            log.write("".join(fail_line(ipv4(MEMORY_BASE + i), i, stamp)
                              for i in range(start, min(start + step, MEMORY_ADDRESSES)))
                      .encode())
    size = os.path.getsize(log_path)
    res["log_bytes"] = size
    res["write_s"] = clock() - t
    res["read_all_s"] = wait_read_all(daemon, db, log_path, size, MEMORY_TIMEOUT_S)
    res["rss_busy_kb"] = read_status(daemon.pid).get("VmRSS")
    # The daemon gives back what a burst faulted in once it has been quiet for 20 s
    # (src/resident.rs): what it holds after that is what the million costs.
    note(f"memory: waiting {SETTLE_S} s for the daemon to settle")
    time.sleep(SETTLE_S)
    st = read_status(daemon.pid)
    res["rss_1m_kb"], res["hwm_kb"] = st.get("VmRSS"), st.get("VmHWM")


def _per_address(mem):
    """(bytes per tracked address, target met?), or (None, None)."""
    idle_kb, m_kb = mem.get("rss_idle_kb"), mem.get("rss_1m_kb")
    if "error" in mem or not idle_kb or not m_kb:
        return None, None
    delta = (m_kb - idle_kb) * 1024
    return delta / MEMORY_ADDRESSES, delta <= MEMORY_TARGET_BYTES * MEMORY_ADDRESSES


def report(run, mem):
    problems, misses = run.report.problems, run.report.misses
    say(f"5. Memory: daemon VmRSS ({MEMORY_BACKEND} backend)")
    if driver_problems(run.report, "memory", mem):
        say(f"   could not run: {mem['error'].splitlines()[0]}")
    else:
        idle_kb, m_kb = mem.get("rss_idle_kb"), mem.get("rss_1m_kb")
        tracked = None
        m = re.search(r"(\d+) bans made in this run, (\d+) addresses being counted",
                      mem.get("daemon_stopped") or "")
        if m:
            tracked = int(m.group(2))
            if int(m.group(1)):
                problems.append(f"memory: {m.group(1)} bans with failed_attempts "
                                f"{MEMORY_FAILED_ATTEMPTS}")
        if mem.get("read_all_s") is None:
            problems.append(f"memory: the daemon had not handled all {MEMORY_ADDRESSES:,} "
                            f"lines (saved position = file size, RSS steady) after "
                            f"{MEMORY_TIMEOUT_S:g} s")
        if tracked is not None and tracked != MEMORY_ADDRESSES:
            problems.append(f"memory: the daemon counted {tracked:,} addresses at the end, "
                            f"{MEMORY_ADDRESSES:,} were appended")
        say(f"   {'idle, after start, no counters':46}{mib(idle_kb):>10}")
        say(f"   {format(MEMORY_ADDRESSES, ',') + ' tracked addresses':46}"
            f"{mib(m_kb):>10}   (settled; {mib(mem.get('rss_busy_kb'))} right after the flood, "
            f"VmHWM {mib(mem.get('hwm_kb'))}; "
            f"{mem.get('log_bytes', 0) / 1e6:.0f} MB appended in {mem.get('write_s', 0):.1f} s, "
            + ("not all handled" if mem.get("read_all_s") is None else
               f"handled and flushed within {mem['read_all_s']:.1f} s")
            + (f"; daemon counted {tracked:,} at exit)" if tracked is not None else ")"))
        per_addr, mem_ok = _per_address(mem)
        if per_addr is not None:
            delta = (m_kb - idle_kb) * 1024
            say(f"   per tracked address: ({mib(m_kb)} - {mib(idle_kb)}) / 1e6 = "
                f"{per_addr:.1f} bytes    target: tens of MB for 1M "
                f"(<= {MEMORY_TARGET_BYTES} bytes each)    {verdict(mem_ok)}")
            if not mem_ok:
                misses.append(f"memory: {delta / 1e6:.0f} MB for {MEMORY_ADDRESSES:,} "
                              f"tracked addresses ({per_addr:.0f} bytes each; target "
                              f"<= {MEMORY_TARGET_BYTES})")
    lat = run.results.get("latency")
    if lat is not None:
        say(f"   {'daemon, after the iptables latency test (VmHWM)':46}"
            f"{mib(lat['iptables'].get('daemon_hwm_kb')):>10}")
    sc = run.results.get("scan")
    if sc is not None:
        nlines = run.big_log["lines"]
        say(f"   {f'pyfilter scan of {nlines:,} lines (ru_maxrss)':46}"
            f"{mib(sc['pf_rss']):>10}"
            f"   (rg -c on the same file: {mib(sc['rg_rss'])}, includes mmapped file pages)")
    say()
    idle = run.idle
    say(f"6. Idle CPU: utime+stime of the daemon (all threads, /proc/PID/stat) over "
        f"{idle} s without log activity")
    if "error" not in mem and "idle_cpu_s" in mem:
        idle_cpu = mem["idle_cpu_s"]
        idle_ok = idle_cpu < IDLE_CPU_TARGET_S
        say(f"   {idle_cpu:.2f} s CPU in {mem['idle_wall_s']:.1f} s "
            f"(children {mem['idle_child_cpu_s']:.2f} s; {mem['idle_switches']} context "
            f"switch(es); resolution {mem['tick_s']:.2f} s)    target: < "
            f"{IDLE_CPU_TARGET_S:g} s    {verdict(idle_ok)}")
        if not idle_ok:
            misses.append(f"idle CPU {idle_cpu:.2f} s over {idle} s (target < "
                          f"{IDLE_CPU_TARGET_S:g} s)")
    else:
        say("   not measured (see problems)")
    say()


def summary(run, mem):
    per_addr, mem_ok = _per_address(mem)
    if per_addr is not None:
        say(f"  memory    idle {mib(mem.get('rss_idle_kb'))}, {MEMORY_ADDRESSES:,} tracked "
            f"{mib(mem.get('rss_1m_kb'))}: {per_addr:.1f} bytes/address   target tens of MB "
            f"  {verdict(mem_ok)}")
    else:
        say("  memory    no measurement (see problems)")
    if "error" not in mem and "idle_cpu_s" in mem:
        idle_ok = mem["idle_cpu_s"] < IDLE_CPU_TARGET_S
        say(f"  idle CPU  {mem['idle_cpu_s']:.2f} s over {run.idle} s   target < "
            f"{IDLE_CPU_TARGET_S:g} s   {verdict(idle_ok)}")
    else:
        say("  idle CPU  no measurement (see problems)")


def daemon_logs(run, mem):
    return [("memory", None, mem.get("daemon_stderr"))]
