"""Resize a tensor to the spatial size of another one, or by an integer factor."""

from __future__ import annotations

import keras
import tensorflow as tf

# "bilinear" has half-pixel centres (PyTorch's align_corners=False); "bilinear_align_corners"
# maps the corner pixels onto each other (PyTorch's align_corners=True, which
# HRNet-Semantic-Segmentation's later code and HRNet-OCR train with); "nearest".
INTERPOLATIONS = ("bilinear", "bilinear_align_corners", "nearest")


def _check(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


def resize(x, size, interpolation: str):
    """`x` (N, H, W, C) resized to `size` by `interpolation` (`INTERPOLATIONS`), in its
    dtype. Every one lowers to TFLite's builtin resize ops."""
    if interpolation == "bilinear_align_corners":
        y = tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True)
    else:
        y = tf.image.resize(x, size, method=interpolation)
    return tf.cast(y, x.dtype)


@keras.saving.register_keras_serializable(package="kseg")
class ResizeLike(keras.layers.Layer):
    """Resizes `inputs[0]` to the height and width of `inputs[1]`.

    Works with unknown (dynamic) spatial sizes, which `keras.layers.Resizing` does not. It
    lowers to TFLite's builtin RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR.

    Args:
        interpolation: one of `INTERPOLATIONS`.

    Example:
        >>> up = ResizeLike()([coarse_logits, image])
    """

    def __init__(self, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = _check(interpolation)

    def call(self, inputs):
        x, ref = inputs
        return resize(x, tf.shape(ref)[1:3], self.interpolation)

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="kseg")
class Upsample(keras.layers.Layer):
    """Upsamples height and width by an integer `factor`, also for unknown sizes.

    `keras.layers.UpSampling2D(interpolation="bilinear")` fails in graph mode when the
    height or width is unknown (Keras 3.15 tests the symbolic size in Python), which
    whole-image evaluation of variable-size datasets needs. Same values as UpSampling2D
    (`tf.image.resize` with half-pixel centres); lowers to TFLite's builtin resize ops.

    Example:
        >>> Upsample(4)(np.zeros((1, 8, 16, 3), "float32")).shape
        TensorShape([1, 32, 64, 3])
    """

    def __init__(self, factor: int, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.interpolation = _check(interpolation)

    def call(self, inputs):
        return resize(inputs, tf.shape(inputs)[1:3] * self.factor, self.interpolation)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        scale = lambda d: None if d is None else d * self.factor  # noqa: E731
        return (n, scale(h), scale(w), c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "interpolation": self.interpolation}
