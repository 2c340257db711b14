"""Median wall time of a callable; standard library only, so the peer venv can import it."""

import statistics
import time


def timed(fn, runs: int, warmup: int = 1) -> float:
    """Median seconds of `runs` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
