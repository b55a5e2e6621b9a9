"""A fleet of the run's own: N pyfilter servers, each in its own network namespace with
the nftables backend and an `nft monitor` beside it, all on the run's Redis."""

import time

from .base import BenchError, clock, note
from .daemon import Daemon, fleet_config
from .firewall import Monitor
from .netns import Netns


class Fleet:
    """With `backend` none, no monitor: a ban's arrival is the daemon's log line."""

    def __init__(self, pyfilter, tmp, redis, count, prefix="s", backend="nftables"):
        self.members = []          # [name, ns, monitor, daemon, log, configuration]
        self.redis = redis
        try:
            for i in range(count):
                name = f"{prefix}{i:02d}"
                ns = Netns(name)
                cfg, log = fleet_config(tmp, name, redis.url)
                if backend != "nftables":
                    with open(cfg) as f:
                        text = f.read().replace("firewall: { backend: nftables }",
                                                f"firewall: {{ backend: {backend} }}")
                    with open(cfg, "w") as f:
                        f.write(text)
                    mon = None
                else:
                    mon = Monitor(ns=ns)
                    if not mon.start():
                        raise BenchError("nft not found: apt-get install -y nftables")
                self.members.append([name, ns, mon, None, log, cfg])
            time.sleep(0.3)  # the monitors subscribe before the daemons build their tables
            t0 = clock()
            for m in self.members:
                m[3] = Daemon(pyfilter, m[5], m[0], m[1], keep=40)
            for m in self.members:
                m[3].wait("ready", 60)
                m[3].wait("sync", 30)
            self.start_s = clock() - t0
            note(f"fleet: {count} servers ready and subscribed in {self.start_s:.1f} s")
        except BaseException:
            self.stop()
            raise

    @property
    def monitors(self):
        return [m[2] for m in self.members]

    def daemon(self, i):
        return self.members[i][3]

    def log(self, i):
        return self.members[i][4]

    def rss_kb(self):
        """VmRSS of every daemon, in kB."""
        from .figures import read_status
        return [read_status(m[3].proc.pid).get("VmRSS") or 0 for m in self.members]

    def stop(self):
        """Stops every daemon; {name: (alive, exit, last lines, errors)}."""
        out = {}
        for name, ns, mon, d, _, _ in self.members:
            if d is not None:
                alive, rc = d.stop()
                out[name] = (alive, rc, d.lines[-20:], d.errors[-5:])
            if mon is not None:
                mon.stop()
            ns.close()
        self.members = []
        return out
