"""What the kernel holds, and when a ban got there: counts, `nft monitor` events, polls,
and ipset's own netlink test. Every function here runs its commands either in the
namespace this process is in (a driver from netns.in_own_netns) or, given `ns`, in a
netns.Netns; never call them from the host's namespace without `ns`."""

import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

from .base import clock
from .guard import STAMP as GUARD_STAMP
from .procs import STARTED, run_quiet, spawn, stop_child

BACKENDS = ("iptables", "ipset", "nftables")
CHAIN = "PYFILTER"
IPSET_V4 = "pyfilter-v4"
NFT_TABLE = "pyfilter"

MONITOR_RULE = re.compile(r"^add rule ip filter (\S+) .*\bip saddr (\S+) .*\bdrop\b")
MONITOR_ELEMENT = re.compile(r"^add element inet (\S+) v4 \{(.*)\}")
IPV4_TEXT = re.compile(r"(?<![\d.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d./])")


def _run(argv, ns=None, timeout=60):
    if ns is not None:
        return ns.run(argv, timeout=timeout)
    return run_quiet(argv, timeout=timeout)


def kernel_count(backend, ns=None, timeout=300):
    """IPv4 host bans the kernel holds: rules in PYFILTER, members of pyfilter-v4, or
    elements of the nftables set v4. Returns (count or None, seconds the query took)."""
    t0 = clock()
    if backend == "iptables":
        rc, out, _ = _run(["iptables", "-w", "-S", CHAIN], ns, timeout)
        n = sum(1 for l in out.splitlines() if l.startswith(f"-A {CHAIN} ")) if rc == 0 else None
    elif backend == "ipset":
        rc, out, _ = _run(["ipset", "list", "-t", IPSET_V4], ns, min(timeout, 60))
        m = re.search(r"^Number of entries: (\d+)", out, re.M)
        n = int(m.group(1)) if rc == 0 and m else None
    else:
        rc, out, _ = _run(["nft", "list", "set", "inet", NFT_TABLE, "v4"], ns, timeout)
        n = len(IPV4_TEXT.findall(out.split("elements", 1)[1])) if rc == 0 and \
            "elements" in out else (0 if rc == 0 else None)
    return n, clock() - t0


def has_rule(ip):
    _, out, _ = run_quiet(["iptables", "-w", "-S", CHAIN])
    return f"-s {ip}/32 " in out


def has_element(ip, ns=None):
    rc, _, _ = _run(["nft", "get", "element", "inet", NFT_TABLE, "v4", f"{{ {ip} }}"], ns)
    return rc == 0


def ipset_test(ip):
    rc, _, _ = run_quiet(["ipset", "-q", "test", IPSET_V4, ip])
    return rc == 0


class IpsetNetlink:
    """`ipset test SET IP` without a process: the IPSET_CMD_TEST netlink request itself
    (a few microseconds), so the set can be polled finely without loading the CPUs."""
    NETLINK_NETFILTER, SUBSYS, CMD_TEST = 12, 6, 11
    ERR_EXIST = 4103  # IPSET_ERR_EXIST: not in the set

    def __init__(self, setname):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, self.NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.settimeout(1.0)
        self.setname = setname.encode() + b"\0"
        self.seq = 0

    @staticmethod
    def _nla(t, payload):
        n = 4 + len(payload)
        return struct.pack("=HH", n, t) + payload + b"\0" * (-n % 4)

    def test(self, ip):
        """True if a member, False if not; raises OSError on any other answer."""
        self.seq += 1
        nla = self._nla
        body = struct.pack("=BBH", socket.AF_INET, 0, 0)
        body += nla(1, b"\x06")                           # IPSET_ATTR_PROTOCOL 6
        body += nla(2, self.setname)                      # IPSET_ATTR_SETNAME
        addr = nla(1 | 0x4000, socket.inet_aton(ip))      # IPADDR_IPV4, net byte order
        body += nla(7 | 0x8000, nla(1 | 0x8000, addr))    # DATA { IP { addr } }, nested
        hdr = struct.pack("=IHHII", 16 + len(body), self.SUBSYS << 8 | self.CMD_TEST,
                          1 | 4, self.seq, 0)             # NLM_F_REQUEST | NLM_F_ACK
        self.sock.send(hdr + body)
        while True:
            resp = self.sock.recv(65536)
            _, typ, _, seq, _ = struct.unpack_from("=IHHII", resp)
            if seq != self.seq:
                continue
            if typ != 2:  # NLMSG_ERROR carries the answer
                raise OSError(f"unexpected netlink message type {typ}")
            err = struct.unpack_from("=i", resp, 16)[0]
            if err == 0:
                return True
            if err == -self.ERR_EXIST:
                return False
            raise OSError(-err, f"ipset netlink test: error {err}")

    def close(self):
        self.sock.close()


class Monitor:
    """`nft monitor` (iptables backend: `nft monitor rules`), here or in a Netns: each
    IPv4 ban (an iptables rule in PYFILTER, or an element added to the nftables set v4)
    is timestamped as soon as its line is read. With `target`, the moment the target-th
    distinct address was read is kept too (`full_at`)."""

    def __init__(self, backend="nftables", ns=None, target=None):
        self.backend = backend
        self.ns = ns
        self.cond = threading.Condition()
        self.seen = {}            # ip -> clock() when its ban was read
        self.target = target      # count whose arrival is timed
        self.full_at = None       # when the target-th distinct address was read
        self.ready_seen = False   # pyfilter's jump rule (iptables) or input chain (nft)
        self.first_at = None      # first line of any kind (pyfilter's table being built)
        # Transactions: nft monitor ends each one with "# new generation N by ...", after
        # its events; the kernel sends a transaction's events only once it is committed.
        self.gen = 0              # index of the transaction whose events are being read
        self.gen_elements = {}    # index -> new addresses it added
        self.gen_first = {}       # index -> when its first element line was read
        self.other = []           # stderr lines (errors, ...)
        self.lines = 0
        self.proc = None

    def start(self):
        """Starts `nft monitor`; False if nft is not installed."""
        nft = shutil.which("nft")
        if nft is None:
            return False
        argv = [nft, "monitor"] + (["rules"] if self.backend == "iptables" else [])
        if self.ns is not None:
            argv = self.ns.argv(argv)
        self.proc = spawn(argv, grace=2.0, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._errors, daemon=True).start()
        return True

    def _read(self):
        for raw in self.proc.stdout:
            t = clock()
            line = raw.decode("utf-8", "replace")
            with self.cond:
                self.lines += 1
                if self.first_at is None:
                    self.first_at = t
                if self.backend == "iptables":
                    m = MONITOR_RULE.match(line)
                    if m and m.group(1) == CHAIN:
                        self._seen(m.group(2).split("/")[0], t)
                    elif f"jump {CHAIN}" in line:
                        self.ready_seen = True
                elif line.startswith("# new generation"):
                    self.gen += 1
                else:
                    m = MONITOR_ELEMENT.match(line)
                    if m and m.group(1) == NFT_TABLE:
                        for ip in IPV4_TEXT.findall(m.group(2)):
                            self._seen(ip, t)
                        if (self.target is not None and self.full_at is None
                                and len(self.seen) >= self.target):
                            self.full_at = t
                    elif line.startswith(f"add rule inet {NFT_TABLE} input"):
                        self.ready_seen = True
                self.cond.notify_all()

    def _seen(self, ip, t):
        if ip not in self.seen:
            self.seen[ip] = t
            self.gen_elements[self.gen] = self.gen_elements.get(self.gen, 0) + 1
            self.gen_first.setdefault(self.gen, t)

    def _errors(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line.startswith(GUARD_STAMP):
                with self.cond:
                    self.other.append(line)
                    del self.other[:-20]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.ready_seen, timeout)

    def present(self, ip):
        with self.cond:
            return ip in self.seen

    def wait_ban(self, ip, deadline):
        with self.cond:
            self.cond.wait_for(lambda: ip in self.seen, max(0.0, deadline - clock()))
            return self.seen.get(ip)

    def wait_full(self, deadline):
        with self.cond:
            self.cond.wait_for(lambda: self.full_at is not None,
                               max(0.0, deadline - clock()))
            return self.full_at

    def count(self):
        with self.cond:
            return len(self.seen)

    def stop(self):
        if self.proc is not None:
            stop_child(self.proc, grace=2.0)
            STARTED.forget(self.proc)


def settle_monitor(monitor):
    """Starts `nft monitor` (unless PYFILTER_BENCH_POLL=1 forces polling); False if it
    cannot run."""
    if os.environ.get("PYFILTER_BENCH_POLL") == "1" or not monitor.start():
        return False
    time.sleep(0.3)  # let it subscribe before the daemon sets up its chain or table
    return monitor.proc.poll() is None


class Poller:
    """Polls `probe(ip)` until it says the ban is in the kernel. The time taken is that of
    the first poll that sees it (an upper bound); `resolution_ms` is the mean time from
    one poll to the next while waiting."""

    def __init__(self, probe, pause, mode):
        self.probe, self.pause, self.mode = probe, pause, mode
        self.polls, self.poll_time = 0, 0.0

    def present(self, ip):
        return self.probe(ip)

    def wait_ban(self, ip, deadline):
        start = clock()
        n = 0
        try:
            while True:
                found = self.probe(ip)
                t = clock()
                n += 1
                if found:
                    return t
                if t >= deadline:
                    return None
                if self.pause:
                    time.sleep(self.pause)
        finally:
            self.polls += n
            self.poll_time += clock() - start

    def resolution_ms(self):
        return self.poll_time / self.polls * 1000 if self.polls else None

    def stop(self):
        pass
