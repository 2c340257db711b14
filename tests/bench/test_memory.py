"""The benchmarks' memory measures (bench/_memory.py) against closed-form answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

# Run in a fresh process: the allocator statistics and the profiler's allocation events
# exist with TensorFlow's BFC allocator only, which must be chosen before the first tensor.
SCRIPT = """
import json
import tensorflow as tf
import _memory

MIB = 2**20
x = tf.ones([MIB // 4])  # 1 MiB, live before the calls


@tf.function
def one():  # a 16 MiB tensor, then its sum
    return tf.reduce_sum(tf.concat([x] * 16, 0))


@tf.function
def three():  # 16 and 8 MiB, then their 24 MiB concatenation while both are live
    a, b = tf.tile(x, [16]), tf.tile(x, [8])
    return tf.reduce_sum(tf.concat([a, b], 0))


out = {}
for name, fn in (("one", one), ("three", three)):
    fn()
    out[name] = [_memory.tensor_peak(fn), _memory.peak_memory(fn).extra_mib]
print(json.dumps(out))
"""


def test_tensor_peak_and_the_allocators_peak_count_what_a_call_holds():
    env = {**os.environ, "PYTHONPATH": str(BENCH), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for name, mib in (("one", 16), ("three", 48)):
        tensors, chunks = out[name]
        assert abs(tensors - mib) < 0.01, (name, out)  # the tensors' own bytes, exactly
        # The allocator's chunks: at least the tensors, more where a chunk was handed out
        # whole (on TF 2.21 "three" counts 56 MiB: an 8 MiB tail).
        assert chunks > mib - 0.01, (name, out)
    assert out["one"][1] < 16.5, out
