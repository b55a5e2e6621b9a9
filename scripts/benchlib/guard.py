"""The namespace guard, run as a script by nsenter inside a network namespace:

    python3 -S guard.py HOST_NS -- PROGRAM ARGS...

execs PROGRAM only if this process is not in the host's network namespace HOST_NS (as
/proc/self/ns/net names it), so that no firewall command can reach the machine's own
firewall. Just before the exec it writes `STAMP<CLOCK_MONOTONIC> in <namespace>` to
stderr: the moment the program's image starts, for the figures that count from there.

It imports nothing of the harness (run as a script, its package is not loaded either):
it is on the path of every measured start.
"""

import os
import sys
import time

STAMP = "benchlib guard: exec "


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        print("benchlib guard: usage: guard.py HOST_NS -- PROGRAM ARGS...", file=sys.stderr)
        return 2
    host, prog = argv[0], argv[2:]
    here = os.readlink("/proc/self/ns/net")
    if here == host:
        print(f"benchlib guard: REFUSING to run {prog[0]}: this is the host network "
              f"namespace ({here})", file=sys.stderr, flush=True)
        return 97
    sys.stderr.write(f"{STAMP}{time.clock_gettime(time.CLOCK_MONOTONIC):.9f} in {here}\n")
    sys.stderr.flush()
    try:
        os.execvp(prog[0], prog)
    except OSError as e:
        print(f"benchlib guard: cannot exec {prog[0]}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
