"""Propagation across a fleet without a kernel: what pyfilter's own path costs.

As fleet_propagation, on a second fleet of PYFILTER_BENCH_FLEET_SERVERS (50) servers
with `firewall: none` and no `nft monitor`: a ban's arrival on a server is the moment its
"banned ADDR (from ...)" line is read from the daemon's log (Redis pub/sub, the sync
thread, the decision thread; no firewall tool). Run after fleet_burst, whose fleet it
replaces. The difference with fleet_propagation is the kernel's share (an `nft` run on
each of the other servers, all on this machine's cores).
"""

from benchlib.base import BenchError, clock
from benchlib.fleet import Fleet

from benchmarks import fleet_propagation as prop

SUITE = "bench-fleet"
ORDER = 25
TOOLS = ()


def measure(run, res):
    if getattr(run, "fleet", None) is not None:
        run.fleet.stop()
        run.fleet = None
    run.redis.cli("FLUSHALL")
    fleet = Fleet(run.pyfilter, run.tmp, run.redis, run.servers, prefix="n", backend="none")
    try:
        def arrival(k, ip, deadline):
            d = fleet.daemon(k)
            with d.cond:
                d.cond.wait_for(lambda: ip in d.remote_at, max(0.0, deadline - clock()))
                return d.remote_at.get(ip)
        prop.propagate(run, fleet, res, arrival)
    except BenchError:
        raise
    finally:
        fleet.stop()


def report(run, res):
    prop.report(run, res, backend="firewall none")


def summary(run, res):
    prop.summary(run, res, what="without nft")
