"""Footprint of the idle daemon: memory by kind, threads, inotify instances.

Two daemons, each in a network namespace of its own with the default iptables backend,
measured idle: 22 s after 'pyfilter ready' without log activity (the daemon gives back
what start-up touched once it has been quiet for 20 s):
  - default: the shipped configuration and rules on a host that has only auth.log (every
    rule's log_files moved under a fake root where only var/log/auth.log exists);
  - all rules: every shipped rule enabled, each with its first log file existing.
For each: VmRSS (target <= 8 MiB for the default; fail2ban-rs idles at 8.0 MB on this
machine kind), and from /proc/PID/smaps where it stands: the binary's own pages, the heap,
other anonymous maps, libc and the loader, the rest; then threads, inotify instances
(target: 1), open descriptors, and the child processes (the one journalctl the rules
reading the journal share, where the host has a journal) with their own VmRSS.
"""

import glob
import os
import time

from benchlib.base import REPO, BenchError, note, say
from benchlib.daemon import Daemon
from benchlib.figures import mib, verdict
from benchlib.netns import driver_problems, in_own_netns

SUITE = "bench"
ORDER = 55
TOOLS = (("iptables", "iptables"),)

RSS_TARGET_KB = 8 * 1024
INOTIFY_TARGET = 1
THREADS_TARGET = 6            # default configuration: one file thread, and the daemon's own
IDLE_AFTER_S = 22.0
PHASES = (("default", "default configuration, only auth.log"),
          ("all", "every rule enabled, each log there"))


def measure(run, res):
    for phase, what in PHASES:
        note(f"footprint: {what}")
        res[phase] = in_own_netns("footprint", run.tmp, 90, phase=phase,
                                  backend="iptables", pyfilter=run.pyfilter)


def rule_files():
    """{rule: (enabled by default, [log files])} of the shipped rules."""
    try:
        import yaml
    except ImportError:
        raise BenchError("PyYAML is needed to read rules.d (apt-get install python3-yaml)")
    rules = {}
    for path in sorted(glob.glob(os.path.join(REPO, "rules.d", "*.yml"))):
        with open(path) as f:
            doc = yaml.safe_load(f)
        rules[doc["name"]] = (doc.get("enabled", True), list(doc.get("log_files") or []))
    return rules


def config(tmp, phase):
    """The shipped pyfilter.yml, its paths moved into tmp: rules read their logs under
    tmp/root, which holds auth.log only (default) or every rule's first log (all)."""
    root = os.path.join(tmp, "root")
    rules = rule_files()
    present = ["/var/log/auth.log"] if phase == "default" else \
        [files[0] for _, files in rules.values() if files]
    for p in present:
        os.makedirs(os.path.dirname(root + p), exist_ok=True)
        open(root + p, "a").close()
    with open(os.path.join(REPO, "pyfilter.yml")) as f:
        shipped = [line for line in f.read().splitlines()
                   if not line.startswith(("rules:", "  sshd:", "sqlite:", "  path:",
                                           "rules_dir:"))]
    lines = shipped + [
        f"rules_dir: {os.path.join(tmp, 'rules.d')}",
        f"sqlite: {{ path: {os.path.join(tmp, 'db', 'pyfilter.db')} }}",
        "rules:",
    ]
    os.makedirs(os.path.join(tmp, "rules.d"), exist_ok=True)
    for name, (enabled, files) in rules.items():
        moved = ", ".join(f"'{root}{p}'" for p in files)
        on = "true" if (phase == "all" or enabled or name == "sshd") else "false"
        lines.append(f"  {name}: {{ enabled: {on}, log_files: [{moved}] }}")
    cfg = os.path.join(tmp, "pyfilter.yml")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


def smaps(pid, binary):
    """Resident KiB by kind: the binary's own pages, heap, other anonymous, libc and the
    loader, the rest."""
    kinds = {"binary": 0, "heap": 0, "anon": 0, "libc": 0, "other": 0}
    kind = "other"
    real = os.path.realpath(binary)
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                name = head[5] if len(head) > 5 else ""
                if name and os.path.realpath(name) == real:
                    kind = "binary"
                elif name == "[heap]":
                    kind = "heap"
                elif not name or name.startswith("[anon") or name == "[stack]":
                    kind = "anon"
                elif "libc" in name or "ld-linux" in name or "libgcc" in name \
                        or "libm." in name:
                    kind = "libc"
                else:
                    kind = "other"
            elif line.startswith("Rss:"):
                kinds[kind] += int(head[1])
    return kinds


def descriptors(pid):
    inotify = fds = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                inotify += 1
        except OSError:
            pass
    return inotify, fds


def in_netns(ctx, res):
    cfg = config(ctx["tmp"], ctx["phase"])
    daemon = Daemon(ctx["pyfilter"], cfg)
    res["daemon"] = daemon
    res["startup_ms"] = daemon.ready_after(15) * 1000
    time.sleep(IDLE_AFTER_S)
    pid = daemon.pid
    with open(f"/proc/{pid}/status") as f:
        status = {k: v.split()[0] for k, _, v in
                  (line.partition(":") for line in f) if v.strip()}
    res["rss_kb"] = int(status["VmRSS"])
    res["threads"] = int(status["Threads"])
    res["kinds"] = smaps(pid, ctx["pyfilter"])
    res["inotify"], res["fds"] = descriptors(pid)
    res["children"] = children(pid)


def children(pid):
    """[(command, VmRSS KiB)] of the daemon's child processes (a journalctl shared by the
    rules that read the journal, where one is there): not in the daemon's VmRSS."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except OSError:
            continue
        if status.get("PPid", "").strip() == str(pid):
            rss = int(status.get("VmRSS", "0 kB").split()[0])
            found.append((status.get("Name", "?").strip(), rss))
    return found


def report(run, res):
    problems, misses = run.report.problems, run.report.misses
    say(f"7. Footprint of the idle daemon (iptables backend, {IDLE_AFTER_S:g} s after ready)")
    for phase, what in PHASES:
        r = res.get(phase, {})
        if driver_problems(run.report, f"footprint/{phase}", r):
            say(f"   {what}: could not run: {r['error'].splitlines()[0]}")
            continue
        k = r["kinds"]
        rss_ok = r["rss_kb"] <= RSS_TARGET_KB
        ino_ok = r["inotify"] == INOTIFY_TARGET
        thr_ok = phase != "default" or r["threads"] <= THREADS_TARGET
        target = f"target <= {mib(RSS_TARGET_KB)}    {verdict(rss_ok)}" \
            if phase == "default" else "(no target)"
        say(f"   {what:44}VmRSS {mib(r['rss_kb']):>10}   {target}")
        say(f"      binary {mib(k['binary'])}, heap {mib(k['heap'])}, other anonymous "
            f"{mib(k['anon'])}, libc and loader {mib(k['libc'])}, rest {mib(k['other'])}")
        thr = f"target <= {THREADS_TARGET}: {verdict(thr_ok)}" if phase == "default" \
            else "one per log"
        say(f"      threads {r['threads']} ({thr}), "
            f"inotify instances {r['inotify']} (target {INOTIFY_TARGET}: "
            f"{verdict(ino_ok)}), descriptors {r['fds']}, ready after "
            f"{r['startup_ms']:.0f} ms")
        kids = r.get("children") or []
        if kids:
            names = ", ".join(sorted({n for n, _ in kids}))
            say(f"      child processes {len(kids)} ({names}), "
                f"{mib(sum(k for _, k in kids))} besides")
        else:
            say("      child processes none (no rule reads the journal here)")
        if phase == "default" and not rss_ok:
            misses.append(f"footprint: idle VmRSS {mib(r['rss_kb'])} with the default "
                          f"configuration (target <= {mib(RSS_TARGET_KB)})")
        if not ino_ok:
            problems.append(f"footprint/{phase}: {r['inotify']} inotify instances (one "
                            "serves the daemon)")
        if not thr_ok:
            misses.append(f"footprint/{phase}: {r['threads']} threads (target <= "
                          f"{THREADS_TARGET})")
    say()


def summary(run, res):
    r = res.get("default", {})
    a = res.get("all", {})
    if "rss_kb" in r:
        say(f"  footprint idle {mib(r['rss_kb'])}, {r['threads']} threads, "
            f"{r['inotify']} inotify (default); all rules {mib(a.get('rss_kb'))}, "
            f"{a.get('threads')} threads, {a.get('inotify')} inotify   target <= "
            f"{mib(RSS_TARGET_KB)}   {verdict(r['rss_kb'] <= RSS_TARGET_KB)}")
    else:
        say("  footprint no measurement (see problems)")


def daemon_logs(run, res):
    return [(f"footprint/{p}", None, res.get(p, {}).get("daemon_stderr")) for p, _ in PHASES]
