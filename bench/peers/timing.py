"""Median wall time of a callable, and what a call cost the process beyond its own work;
standard library only, so the peer venv can import it."""

import os
import resource
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


def process_usage() -> tuple[float, float]:
    """(kernel CPU seconds, resident MiB) of this process so far, all threads (Linux).

    Their change across a call is what the kernel did for it and how much memory it touched
    for the first time. In a fresh process a step's first call touches most of its memory
    for the first time, and the kernel maps and zeroes each page then: on a virtual machine
    whose host reclaims the pages a guest frees, that can cost seconds per GiB, in the
    kernel time counted here (bench/RESULTS.md, startup)."""
    kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return kernel, pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def usage_since(before: tuple[float, float]) -> dict:
    """The kernel seconds and newly resident MiB since `before` (a `process_usage()`)."""
    kernel, resident = process_usage()
    return {"kernel_s": kernel - before[0], "new_mib": resident - before[1]}
