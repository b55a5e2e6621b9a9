"""Many rules on one log: `pyfilter scan` of a million-line mail log read by every mail
rule at once, against the same log read by postfix alone.

Every rule reading a file is compiled into one automaton for that file, so the cost of a
line should not grow with the number of rules reading it. The mail rules are the shipped
rules whose log_files name the mail log (/var/log/mail.log, maillog, Exim's mainlog):
postfix, dovecot, exim, courier-auth today, and every new one automatically.

The log (built once and cached under target/bench/): a million lines of a busy mail
server -- postfix smtpd/qmgr/cleanup traffic, SASL failures and rejects, dovecot logins
and failures, courier, exim -- with many distinct addresses (documentation and private
ranges). Times `pyfilter scan --json LOG > /dev/null` with every mail rule enabled, and
with postfix alone (best of PYFILTER_BENCH_RUNS, page cache warm); prints both in lines
per second, their ratio (target: all the mail rules cost at most 1.5x one rule), and the
sshd-only figure of the scan benchmark beside them when it ran.
"""

import glob
import json
import os
import re
import subprocess

from benchlib.base import REPO, BenchError, note, say
from benchlib.figures import mib, spawn_wait, verdict
from benchlib.logs import chown_to_invoker

SUITE = "bench"
ORDER = 11
TOOLS = ()

LINES = 1_000_000
GEN_VERSION = 1
RATIO_TARGET = 1.5
MAIL_LOGS = re.compile(r"mail\.log|maillog|exim\S*/main", re.I)


def mail_rules():
    """Names of the shipped rules that read a mail log."""
    names = []
    for path in sorted(glob.glob(os.path.join(REPO, "rules.d", "*.yml"))):
        text = open(path, encoding="utf-8").read()
        name = re.search(r"^name:\s*(\S+)", text, re.M)
        files = re.search(r"^log_files:\s*(\[.*?\]|(?:\n\s+- .*)+)", text, re.M)
        if name and files and MAIL_LOGS.search(files.group(1)):
            names.append(name.group(1))
    return names


def _addr(i):
    return f"{10 + i % 200}.{(i // 200) % 250}.{(i // 50000) % 250}.{1 + i % 250}"


def _lines():
    """An endless mail log; failures about one line in six."""
    months = ("Nov",)
    i = 0
    while True:
        s, ip, pid = i % 86400, _addr(i), 1000 + i % 30000
        t = f"{months[0]} 26 {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d} mx1"
        k = i % 12
        if k == 0:
            yield f"{t} postfix/smtpd[{pid}]: connect from unknown[{ip}]"
        elif k == 1:
            yield (f"{t} postfix/smtpd[{pid}]: warning: unknown[{ip}]: SASL LOGIN "
                   f"authentication failed: UGFzc3dvcmQ6, sasl_username=user{i % 977}")
        elif k == 2:
            yield (f"{t} postfix/smtpd[{pid}]: 4F3A{i:08X}: client=mail{i % 97}.example.net"
                   f"[{ip}]")
        elif k == 3:
            yield (f"{t} postfix/cleanup[{pid}]: 4F3A{i:08X}: message-id=<{i}.x@example.net>")
        elif k == 4:
            yield (f"{t} postfix/qmgr[{pid}]: 4F3A{i:08X}: from=<a{i % 503}@example.net>, "
                   f"size={1000 + i % 90000}, nrcpt=1 (queue active)")
        elif k == 5:
            yield (f"{t} dovecot: imap-login: Login: user=<u{i % 331}@example.org>, "
                   f"method=PLAIN, rip={ip}, lip=192.0.2.1, mpid={pid}, TLS, session=<x{i}>")
        elif k == 6:
            yield (f"{t} dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 "
                   f"secs): user=<u{i % 331}@example.org>, method=PLAIN, rip={ip}, "
                   f"lip=192.0.2.1, TLS, session=<y{i}>")
        elif k == 7:
            yield (f"{t} postfix/smtp[{pid}]: 4F3A{i:08X}: to=<r{i % 211}@example.com>, "
                   f"relay=mx.example.com[198.51.100.7]:25, delay=0.5, dsn=2.0.0, "
                   f"status=sent (250 2.0.0 Ok)")
        elif k == 8:
            yield (f"{t} postfix/smtpd[{pid}]: NOQUEUE: reject: RCPT from unknown[{ip}]: "
                   f"554 5.7.1 <x{i % 89}@example.org>: Relay access denied; "
                   f"from=<s@example.net> to=<x{i % 89}@example.org> proto=ESMTP helo=<pc>")
        elif k == 9:
            yield (f"{t} postfix/smtpd[{pid}]: disconnect from unknown[{ip}] ehlo=1 "
                   f"mail=1 rcpt=1 data=1 quit=1 commands=5")
        elif k == 10:
            yield (f"{t} dovecot: pop3-login: Disconnected (no auth attempts in 0 secs): "
                   f"user=<>, rip={ip}, lip=192.0.2.1, session=<z{i}>")
        else:
            yield (f"{t} imapd: LOGIN, user=u{i % 331}@example.org, ip=[::ffff:{ip}], "
                   f"port=[{40000 + i % 20000}], protocol=IMAP")
        i += 1


def big_mail_log():
    """target/bench/mail-1m.log, built once (checked by its meta file)."""
    cache = os.path.join(REPO, "target", "bench")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, "mail-1m.log")
    meta = {"version": GEN_VERSION, "lines": LINES}
    try:
        with open(path + ".meta") as f:
            old = json.load(f)
        if old.get("meta") == meta and os.path.getsize(path) == old.get("size"):
            return path
    except (OSError, ValueError):
        pass
    note("mail log: building target/bench/mail-1m.log")
    gen = _lines()
    with open(path + ".tmp", "w") as out:
        for _ in range(LINES):
            out.write(next(gen))
            out.write("\n")
    os.replace(path + ".tmp", path)
    with open(path + ".meta", "w") as f:
        json.dump({"meta": meta, "size": os.path.getsize(path)}, f)
    chown_to_invoker(cache, path, path + ".meta")
    return path


def config(tmp, name, rules):
    """A scan configuration with exactly `rules` enabled, no ignore list."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "pyfilter.yml")
    with open(cfg, "w") as f:
        f.write("\n".join([
            "server_name: bench",
            f"rules_dir: {os.path.join(d, 'rules.d')}",
            "firewall: { backend: none }",
            f"sqlite: {{ path: {os.path.join(d, 'pyfilter.db')} }}",
            "ignore: []",
            f"enabled_rules: [{', '.join(rules)}]",
        ]) + "\n")
    return cfg


def summary_of(pyfilter, cfg, log):
    r = subprocess.run([pyfilter, "-c", cfg, "scan", "--json", log], capture_output=True)
    if r.returncode != 0:
        raise BenchError(f"pyfilter scan exited {r.returncode}: {r.stderr[-300:]!r}")
    last = r.stdout.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return json.loads(last)


def prepare(run):
    run.mail_log = big_mail_log()


def measure(run, res):
    rules = mail_rules()
    if "postfix" not in rules:
        raise BenchError(f"no postfix among the mail rules ({rules})")
    log = run.mail_log
    cfgs = {"one": config(run.tmp, "mail-one", ["postfix"]),
            "all": config(run.tmp, "mail-all", rules)}
    note(f"mail rules: untimed warm-up runs ({', '.join(rules)})")
    summaries = {k: summary_of(run.pyfilter, c, log) for k, c in cfgs.items()}
    times = {"one": [], "all": []}
    rss = {"one": 0, "all": 0}
    for i in range(run.runs):
        note(f"mail rules: timed run {i + 1}/{run.runs}")
        for k, c in cfgs.items():
            t, rc, kb = spawn_wait([run.pyfilter, "-c", c, "scan", "--json", log], "/dev/null")
            if rc != 0:
                raise BenchError(f"pyfilter scan ({k}) exited {rc}")
            times[k].append(t)
            rss[k] = max(rss[k], kb)
    res.update(rules=rules, summaries=summaries, times=times, rss=rss)


def _figures(res):
    one, every = min(res["times"]["one"]), min(res["times"]["all"])
    return one, every, every / one if one > 0 else float("inf")


def report(run, res):
    one, every, ratio = _figures(res)
    ok = ratio <= RATIO_TARGET
    if not ok:
        run.report.misses.append(f"mail rules: {len(res['rules'])} rules cost {ratio:.2f}x "
                                 f"one (target <= {RATIO_TARGET:g}x)")
    for k, s in res["summaries"].items():
        if s.get("lines") != LINES:
            run.report.problems.append(f"mail rules: scan ({k}) says {s.get('lines')} lines, "
                                       f"the log has {LINES}")
    say(f"2. Many rules on one log: {LINES:,} mail-log lines, best of {run.runs}, "
        f"page cache warm")
    say(f"   {'':38}{'best s':>8}{'lines/s':>13}{'matched':>11}{'peak RSS':>11}")
    for k, label in (("one", "postfix alone"),
                     ("all", f"{len(res['rules'])} mail rules ({', '.join(res['rules'])})")):
        best = min(res["times"][k])
        say(f"   {label[:38]:38}{best:8.3f}{LINES / best:13,.0f}"
            f"{res['summaries'][k].get('matched', 0):11,}{mib(res['rss'][k]):>11}")
    scan = run.results.get("scan")
    if scan:
        nlines = run.big_log["lines"]
        say(f"   {'sshd alone, sshd log (scan above)':38}{min(scan['pf_times']):8.3f}"
            f"{nlines / min(scan['pf_times']):13,.0f}")
    say(f"   all the mail rules / postfix alone: {ratio:.2f}x    target: <= "
        f"{RATIO_TARGET:g}x    {verdict(ok)}")
    say()


def summary(run, res):
    one, every, ratio = _figures(res)
    say(f"  mail      {LINES / every:>12,.0f} lines/s   {len(res['rules'])} mail rules at once, "
        f"{ratio:4.2f}x postfix alone ({LINES / one:,.0f} lines/s)   target <= "
        f"{RATIO_TARGET:g}x   {verdict(ratio <= RATIO_TARGET)}")
