"""Resize a tensor to the spatial size of another one."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="kseg")
class ResizeLike(keras.layers.Layer):
    """Resizes `inputs[0]` to the height and width of `inputs[1]`.

    Works with unknown (dynamic) spatial sizes, which `keras.layers.Resizing` does not. It
    lowers to TFLite's builtin RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR.

    Args:
        interpolation: "bilinear" or "nearest".

    Example:
        >>> up = ResizeLike()([coarse_logits, image])
    """

    def __init__(self, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}"
            )
        self.interpolation = interpolation

    def call(self, inputs):
        x, ref = inputs
        size = tf.shape(ref)[1:3]
        y = tf.image.resize(x, size, method=self.interpolation)
        return tf.cast(y, x.dtype)

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}
