"""The benchmarks' concerns: one file per thing measured, each starting with a docstring
that says what it measures and how.

A file names the entry point that runs it (SUITE: bench, bench-sync or bench-admin) and
its place there (ORDER), and defines measure() and report(); see benchlib/runner.py for
the whole interface. Adding a concern is adding a file here: the entry point finds it,
runs it in its ORDER with the others, or alone when named (`scripts/bench NAME`).
"""
