"""Median wall time of a callable, and what a call cost the process beyond its own work;
standard library only, so the peer venv can import it."""

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


def process_usage() -> tuple[float, int]:
    """(kernel CPU seconds, page faults served without I/O) of this process so far, all
    threads.

    Their change across a call is what the kernel did for it and how much memory it was
    given afresh: each first touch of a page the process had not used, or had returned to
    the system, is one such fault, and the kernel zeroes the page then. In a fresh process
    a step's first call touches most of its memory for the first time; on a virtual machine
    whose host reclaims the pages a guest frees, that can cost seconds per GiB, in the
    kernel time counted here (bench/RESULTS.md, startup). Resident size would not do as the
    measure: PyTorch returns large blocks to the system after each use and TensorFlow's
    allocator keeps them, so only the faults count both alike."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_stime, usage.ru_minflt


def usage_since(before: tuple[float, int]) -> dict:
    """The kernel seconds and the MiB of pages faulted in since `before` (a
    `process_usage()`)."""
    kernel, faults = process_usage()
    pages = (faults - before[1]) * resource.getpagesize()
    return {"kernel_s": kernel - before[0], "faulted_mib": pages / 2**20}
