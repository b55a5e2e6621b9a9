"""The benchmarks' shared harness; the measurements themselves are in scripts/benchmarks/.

The entry points (scripts/bench, scripts/bench-sync, scripts/bench-admin) each run one
suite: the concerns of scripts/benchmarks/ whose SUITE names it, in their ORDER. An entry
point holds only what is its suite's own: its options, its header and its summary's frame.

  base.py      errors, progress notes, options from the environment, the clock
  procs.py     child processes: they die with the benchmark, and are stopped by PID only
  daemon.py    the binary (built or located), configurations, a running pyfilter
  netns.py     network namespaces: a driver process in a fresh one, or a held one entered
               with nsenter through guard.py
  guard.py     run as a script inside a namespace: execs a program only if that namespace
               is not the host's
  firewall.py  what the kernel holds, and when it got there (nft monitor, polls, netlink)
  logs.py      log lines and writers, the big replicated sshd log
  redis.py     a redis-server of the run's own, on a unix socket
  figures.py   timing, percentiles, memory of a process, the machine, verdicts, the report
  runner.py    finding a suite's concerns, running them, the entry points' main

guard.py imports nothing of the harness: it is on the path of every measured start.
"""
