"""Peak memory of a call, from TensorFlow's allocator statistics: what the benchmarks
report as memory.

The resident size of the process is no measure here: on x86 TensorFlow allocates through
oneDNN's CPU allocator, which pools large blocks and keeps them after the tensors are
freed, so after the first call the resident size hardly moves (measured once by hand: a
second training step of HRNetV2-W48 at 2x256x512 grew it by 372 MiB while its tensors
peaked 1.5 GiB above what was resident before). `tf.config.experimental.get_memory_info`
counts the bytes of live tensors instead, the quantity a GPU's allocator reports: weights,
optimizer state, activations, gradients and solver buffers. oneDNN's own scratch space is not in it.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from peers.timing import process_usage, usage_since

MIB = 2**20
# TensorFlow 2.21 keeps allocator statistics on the CPU only with its BFC allocator; the
# variable is read when the first tensor is allocated, so importing this module before any
# op runs is enough.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


class Peak(NamedTuple):
    """Medians over the measured calls."""

    extra_mib: float  # peak of live tensors during the call, minus those live before it
    total_mib: float  # peak of live tensors during the call (weights and state included)
    seconds: float
    result: object  # the last call's return value
    first_seconds: float  # the warm-up call: tracing, graph optimisation and one run
    first_usage: dict  # its kernel seconds and MiB faulted in (`peers.timing.usage_since`)


def peak_memory(fn, calls: int = 3, device: str = "CPU:0", reset=None) -> Peak:
    """Calls `fn` once to warm up (tracing, optimizer slots), then `calls` times with the
    allocator's peak reset before each call. `reset`, if given, runs before every call,
    untimed (e.g. to restore weights that a training step changes)."""
    reset = reset or (lambda: None)
    reset()
    usage = process_usage()
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    first_usage = usage_since(usage)
    extra, total, seconds, out = [], [], [], None
    for _ in range(calls):
        reset()
        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
        peak = tf.config.experimental.get_memory_info(device)["peak"]
        extra.append((peak - before) / MIB)
        total.append(peak / MIB)
    return Peak(
        float(np.median(extra)),
        float(np.median(total)),
        float(np.median(seconds)),
        out,
        first,
        first_usage,
    )
