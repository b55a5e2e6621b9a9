"""The web admin's pages with a large history, with the SQLite store and with Redis.

Seeds PYFILTER_BENCH_ADMIN_BANS (100,000) bans, 1,000 of them active, spread over 90 days,
into a fresh SQLite file and into a redis-server of the run's own on a unix socket;
starts `pyfilter admin` on a loopback port with `firewall: none` (it touches no
firewall, so it needs no namespace and no root), signs in, and times each page: the
median of PYFILTER_BENCH_RUNS requests (the sign-in, argon2id, once, without the
redirect it answers with). Also the admin's peak RSS (VmHWM). Targets of this
benchmark's own (the issue named none): a page a person waits for, within 200 ms with
SQLite and 1 s with Redis.
"""

import http.cookiejar
import os
import random
import re
import sqlite3
import statistics
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from benchlib.base import BenchError
from benchlib.daemon import Daemon, admin_config
from benchlib.figures import read_status
from benchlib.redis import Redis, resp

SUITE = "bench-admin"
ORDER = 10
TOOLS = (("redis-server", "redis-server"), ("redis-cli", "redis-server"))

PASSWORD = "correct horse battery staple"
TARGETS = {"sqlite": 0.2, "redis": 1.0}
KINDS = ("sqlite", "redis")
PAGES = [
    ("dashboard", "/"),
    ("history page 1", "/history"),
    ("history page 200", "/history?page=200"),
    ("history by CIDR", "/history?ip=10.0.0.0%2F16&page=3"),
    ("a ban's details", "/bans/500"),
]


def ban_rows(count, now):
    rules = ["sshd", "postfix", "dovecot", "nginx-botsearch"]
    servers = ["web-1", "web-2", "mail-1"]
    rnd = random.Random(7)
    for i in range(1, count + 1):
        at = now - rnd.randint(0, 90 * 86400)
        active = i <= 1000
        yield {
            "id": i,
            "net": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32",
            "rule": rnd.choice(rules),
            "reason": f"Failed password for root from 10.0.0.{i & 255} port 22 ssh2",
            "attempts": 5,
            "server": rnd.choice(servers),
            "source": "log",
            "banned_at": at,
            "expires_at": now + 86400 if active else at + 86400,
            "lifted_at": None if active else at + 3600,
            "lift_reason": None if active else "expired",
        }


def seed_sqlite(pyfilter, cfg, db, count):
    # `prune` creates the schema, as any command that writes does (`list` only reads).
    subprocess.run([pyfilter, "-c", cfg, "prune"], check=True, stdout=subprocess.DEVNULL)
    con = sqlite3.connect(db)
    cols = ["net", "rule", "reason", "attempts", "server", "source", "banned_at",
            "expires_at", "lifted_at", "lift_reason"]
    con.executemany(
        f"INSERT INTO bans ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        ([r[c] for c in cols] for r in ban_rows(count, int(time.time()))))
    con.commit()
    con.close()


def seed_redis(redis, count):
    """`count` bans as the store's RECORD and LIFT scripts write them (layout 2)."""
    p = "pyfilter:"
    chunks = []
    for r in ban_rows(count, int(time.time())):
        fields = [r["net"], r["rule"], 5, r["server"], "log", r["banned_at"],
                  r["expires_at"], r["reason"]]
        if r["lifted_at"] is None:
            chunks.append(resp("ZADD", p + "expiry", r["expires_at"], r["net"]))
        else:
            fields += [r["lifted_at"], "expired"]
        chunks.append(resp("HSET", p + "records", r["id"], "\t".join(map(str, fields))))
        chunks.append(resp("HSET", p + "offences", r["net"], f"{r['id']}:{r['banned_at']}"))
        chunks.append(resp("ZADD", f"{p}history:{r['id'] // 128}", r["banned_at"], r["id"]))
    chunks.append(resp("SET", p + "next_id", count))
    chunks.append(resp("SET", p + "layout", 2))
    _, errors, _ = redis.pipe(b"".join(chunks))
    if errors:
        raise BenchError(f"redis-cli --pipe: {errors} errors")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Times the sign-in alone, not the dashboard it redirects to."""

    def redirect_request(self, *args, **kwargs):
        return None


def sign_in(base):
    jar = http.cookiejar.CookieJar()
    cookies = urllib.request.HTTPCookieProcessor(jar)
    opener = urllib.request.build_opener(cookies)
    page = opener.open(base + "/login").read().decode()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrf": csrf, "user": "alice", "password": PASSWORD})
    req = urllib.request.Request(base + "/login", data=body.encode(),
                                 headers={"Origin": base})
    t = time.perf_counter()
    try:
        urllib.request.build_opener(cookies, NoRedirect).open(req).read()
    except urllib.error.HTTPError as e:
        if e.code != 303:
            raise BenchError(f"sign-in: HTTP {e.code}")
    took = time.perf_counter() - t
    if not any(c.name == "pyfilter_session" for c in jar):
        raise BenchError("sign-in failed")
    return opener, took


def time_pages(opener, base, runs):
    times = {}
    for name, path in PAGES:
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            with opener.open(base + path) as r:
                r.read()
                if r.status != 200:
                    raise BenchError(f"{path}: HTTP {r.status}")
            samples.append(time.perf_counter() - t)
        times[name] = statistics.median(samples)
    return times


def one_store(pyfilter, tmp, kind, count, runs):
    d = os.path.join(tmp, kind)
    os.makedirs(d)
    redis = admin = None
    try:
        if kind == "redis":
            redis = Redis(d)
        cfg, db = admin_config(d, redis.url if redis else None)
        t = time.perf_counter()
        if redis:
            seed_redis(redis, count)
        else:
            seed_sqlite(pyfilter, cfg, db, count)
        seeded = time.perf_counter() - t
        subprocess.run([pyfilter, "-c", cfg, "admin", "passwd", "alice"],
                       input=PASSWORD + "\n", text=True, check=True,
                       stdout=subprocess.DEVNULL)
        admin = Daemon(pyfilter, cfg, "the admin", args=("admin", "--listen", "127.0.0.1:0"))
        try:
            admin.wait("admin_ready", 30)
        except BenchError:
            raise BenchError("the admin did not say it was ready")
        base = re.search(r"admin ready on (http://\S+?)/?$",
                         admin.line["admin_ready"].strip()).group(1)
        opener, sign_in_s = sign_in(base)
        times = time_pages(opener, base, runs)
        return {"seeded": seeded, "sign_in": sign_in_s, "times": times,
                "rss": (read_status(admin.pid).get("VmHWM") or 0) / 1024}
    finally:
        if admin is not None:
            admin.stop()
        if redis is not None:
            redis.stop()


def measure(run, res):
    for kind in KINDS:
        res[kind] = one_store(run.pyfilter, run.tmp, kind, run.count, run.runs)


def report(run, res):
    print(f"{run.count:,} bans in the history (1,000 active), median of {run.runs} "
          "requests per page")
    print()
    print(f"  {'page':<22}{'sqlite':>12}{'redis':>12}")
    for name, _ in PAGES:
        row = f"  {name:<22}"
        for kind in KINDS:
            s = res[kind]["times"][name]
            row += f"{s * 1000:>10.1f}ms"
            if s > TARGETS[kind]:
                run.report.misses.append(f"{kind} {name}: {s * 1000:.0f} ms (target "
                                         f"{TARGETS[kind] * 1000:.0f} ms)")
        print(row)
    print(f"  {'sign-in (argon2id)':<22}" + "".join(
        f"{res[k]['sign_in'] * 1000:>10.1f}ms" for k in KINDS))
    print(f"  {'admin peak RSS':<22}" + "".join(
        f"{res[k]['rss']:>9.1f}MiB" for k in KINDS))
    print(f"  {'seeding (not timed)':<22}" + "".join(
        f"{res[k]['seeded']:>11.1f}s" for k in KINDS))
    print()
    print(f"targets: every page within {TARGETS['sqlite'] * 1000:.0f} ms with SQLite, "
          f"{TARGETS['redis'] * 1000:.0f} ms with Redis")
