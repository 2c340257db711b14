"""MobileNetV2 inverted-residual bottleneck (Sandler et al. 2018)."""

from __future__ import annotations

import keras

from kseg.layers.conv import conv_norm_act, depthwise_norm_act


def inverted_residual(
    x,
    filters: int,
    expansion: int,
    strides: int = 1,
    activation: str = "relu6",
    name: str = "bottleneck",
):
    """Expand 1x1 -> depthwise 3x3 -> linear project 1x1, with a residual when shapes match.

    As in MobileNetV2, an expansion factor of 1 has no expand convolution, and the residual
    connection is used when the stride is 1 and input and output channels are equal.
    """
    in_channels = x.shape[-1]
    shortcut = x
    if expansion != 1:
        x = conv_norm_act(
            x, in_channels * expansion, 1, activation=activation, name=f"{name}_expand"
        )
    x = depthwise_norm_act(x, 3, strides, activation=activation, name=f"{name}_dw")
    x = conv_norm_act(x, filters, 1, activation=None, name=f"{name}_project")
    if strides == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x
