"""Peak resident memory that a call adds, on Linux: what the benchmarks report as memory."""

from __future__ import annotations

import ctypes
import time

import numpy as np


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (this benchmark needs Linux)")


def peak_extra_mib(fn, calls: int = 3) -> tuple[float, float, object]:
    """(median MiB the peak resident size grows during a call of `fn`, median seconds,
    the last call's result), over `calls` calls after one warm-up call.

    Before each call, freed pages are handed back to the OS (glibc keeps them resident for
    reuse, which would hide the next call's growth) and the peak is reset to the current
    size (writing 5 to /proc/self/clear_refs).
    """
    fn()  # warm-up: tracing, graph optimisation, optimizer slots
    libc = ctypes.CDLL("libc.so.6")
    extra, seconds, out = [], [], None
    for _ in range(calls):
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
        extra.append((_status_kib("VmHWM") - base) / 1024)
    return float(np.median(extra)), float(np.median(seconds)), out
