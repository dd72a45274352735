"""Benchmarks (not timed tests). `make bench` or `python -m bench.run` writes BENCHMARKS.md."""


class Skipped(Exception):
    """Raised by a bench's run() that cannot run here (a missing input): bench.run leaves its
    section of BENCHMARKS.md as it is."""
