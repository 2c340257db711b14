"""Inference latency of a Keras model on this machine."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf


def measure_latency(
    model: keras.Model,
    input_shape: Sequence[int],
    runs: int = 5,
    warmup: int = 1,
    jit_compile: bool = False,
) -> dict[str, float]:
    """Median and minimum seconds of one compiled (tf.function) forward pass, batch 1.

    Args:
        model: the model to time, in inference mode.
        input_shape: (height, width, channels).
        runs: timed repetitions after `warmup` untimed ones (the first traces the graph).
        jit_compile: compile with XLA.
    """
    x = tf.constant(np.random.default_rng(0).random((1, *input_shape), dtype=np.float32))
    fn = tf.function(lambda t: model(t, training=False), jit_compile=jit_compile)
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), fn(x))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(x))
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": runs}
