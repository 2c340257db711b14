"""Adaptive average pooling and the PSPNet pyramid pooling module."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from kseg.layers.conv import conv_norm_act
from kseg.layers.resize import ResizeLike


def _pooling_matrix(length, bins: int, dtype):
    """(bins, length) matrix whose row i averages the cells of bin i.

    Bin i covers [floor(i * L / bins), ceil((i + 1) * L / bins)), the bins of PyTorch's
    `adaptive_avg_pool2d`; bins may overlap and may outnumber the cells. A known `length`
    (an int) gives one constant; a tensor one (a dynamic size) computes it in the graph.
    """
    if isinstance(length, int):
        i = np.arange(bins)[:, None]
        h = np.arange(length)[None, :]
        mask = (h >= i * length // bins) & (h < -(-(i + 1) * length // bins))
        return tf.constant(mask / mask.sum(axis=1, keepdims=True), dtype)
    i = tf.range(bins, dtype=tf.int32)[:, None]
    h = tf.range(length, dtype=tf.int32)[None, :]
    start = (i * length) // bins
    end = -((-(i + 1) * length) // bins)
    mask = tf.cast((h >= start) & (h < end), dtype)
    return mask / tf.reduce_sum(mask, axis=1, keepdims=True)


def spatial_size(inputs) -> list:
    """(height, width) of an NHWC tensor: ints where its static shape knows them, scalar
    tensors where it does not."""
    sizes = inputs.shape[1:3]
    if None in sizes:
        dynamic = tf.shape(inputs)
        return [dynamic[1 + i] if s is None else s for i, s in enumerate(sizes)]
    return list(sizes)


@keras.saving.register_keras_serializable(package="kseg")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Average pooling to a fixed `output_size` grid, whatever the input size.

    Computed as two small matrix products (rows, then columns), so it works on dynamic
    shapes and converts to builtin TFLite ops.

    Args:
        output_size: int or (height, width) of the output grid.

    Example:
        >>> AdaptiveAveragePooling2D(6)(keras.ops.ones((1, 32, 64, 128))).shape
        TensorShape([1, 6, 6, 128])
    """

    def __init__(self, output_size: int | Sequence[int], **kwargs):
        super().__init__(**kwargs)
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(int(s) for s in output_size)
        if len(self.output_size) != 2 or min(self.output_size) < 1:
            raise ValueError(f"output_size must be 1 or 2 positive ints, got {output_size!r}")

    def call(self, inputs):
        height, width = spatial_size(inputs)
        rows = _pooling_matrix(height, self.output_size[0], inputs.dtype)
        cols = _pooling_matrix(width, self.output_size[1], inputs.dtype)
        x = tf.einsum("ih,nhwc->niwc", rows, inputs)
        return tf.einsum("jw,niwc->nijc", cols, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def pyramid_pooling(
    x,
    bins: Sequence[int] = (1, 2, 3, 6),
    merge: str = "concat",
    reduction: int = 4,
    activation: str = "relu6",
    name: str = "ppm",
):
    """Pyramid pooling: the map pooled to bins x bins grids, resized back and merged.

    Two published forms:
    - `merge="concat"`, PSPNet (Zhao et al. 2017): each level is reduced to C / reduction
      channels by a 1x1 conv-BN-activation and concatenated to the input
      (C + len(bins) * C / reduction channels out).
    - `merge="sum"`, ICNet (Zhao et al. 2018, its released prototxt): the levels are summed
      to the input; no parameters, C channels out.
    """
    if merge not in ("concat", "sum"):
        raise ValueError(f"merge must be 'concat' or 'sum', got {merge!r}")
    channels = x.shape[-1]
    levels = [x]
    for b in bins:
        y = AdaptiveAveragePooling2D(b, name=f"{name}_pool{b}")(x)
        if merge == "concat":
            y = conv_norm_act(
                y, max(channels // reduction, 1), 1, activation=activation, name=f"{name}_{b}"
            )
        levels.append(ResizeLike(name=f"{name}_up{b}")([y, x]))
    if merge == "sum":
        return keras.layers.Add(name=f"{name}_sum")(levels)
    return keras.layers.Concatenate(name=f"{name}_concat")(levels)
