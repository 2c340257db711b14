"""Peak memory of a call, from TensorFlow's allocator statistics: what the benchmarks
report as memory.

The resident size of the process is no measure here: on x86 TensorFlow allocates through
oneDNN's CPU allocator, which pools large blocks and keeps them after the tensors are
freed, so after the first call the resident size hardly moves (measured once by hand: a
second training step of HRNetV2-W48 at 2x256x512 grew it by 372 MiB while its tensors
peaked 1.5 GiB above what was resident before). `tf.config.experimental.get_memory_info`
counts the allocator's chunks that hold live tensors instead, the quantity a GPU's
allocator reports: weights, optimizer state, activations, gradients and solver buffers.
oneDNN's own scratch space is not in it.

TensorFlow's BFC allocator (`peak_memory`) hands out a free chunk whole when it is less
than twice the request: a 16 MiB tensor placed in a 26 MiB hole between older allocations
counts 26. How many such tails a call collects depends on the holes the process's earlier
allocations left (bench/RESULTS.md, segnode_memory: 27-85 MiB
of SegNode's training peak, 6-9 of HRNetV2's). `tensor_peak` replays one call's
allocations from the profiler and sums the tensors' own sizes instead, near what PyTorch's
`max_memory_allocated` counts: its caching allocator splits a cached block whenever more
than 1 MiB would be left over.
"""

from __future__ import annotations

import glob
import os
import tempfile
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


def tensor_peak(fn, reset=None) -> float:
    """MiB: the peak, during one call of `fn` (after `reset` if given, untimed), of the
    bytes the live tensors asked the allocator for, above those live before the call (the
    module docstring says how it differs from `peak_memory`'s). The call runs under
    TensorFlow's profiler, whose allocation and deallocation events carry each tensor's
    requested size; warm `fn` up first, or the peak is the tracing's."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    if reset is not None:
        reset()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            fn()
        finally:
            tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        with open(path, "rb") as f:
            space = xplane_pb2.XSpace.FromString(f.read())
    changes = []  # (time in ps, change of the live tensors' requested bytes)
    for plane in space.planes:
        events = {k: m.name for k, m in plane.event_metadata.items()}
        stats = {k: m.name for k, m in plane.stat_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                kind = events.get(event.metadata_id)
                if kind not in ("MemoryAllocation", "MemoryDeallocation"):
                    continue
                (size,) = (s.int64_value or s.uint64_value for s in event.stats
                           if stats[s.metadata_id] == "requested_bytes")  # fmt: skip
                sign = 1 if kind == "MemoryAllocation" else -1
                changes.append((line.timestamp_ns * 1000 + event.offset_ps, sign * size))
    if not changes:
        raise RuntimeError("the profiler recorded no allocations: is TF_CPU_ALLOCATOR_USE_BFC set?")
    live = peak = 0
    for _, change in sorted(changes):
        live += change
        peak = max(peak, live)
    return peak / MIB
