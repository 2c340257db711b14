"""Convolution + batch norm + activation builders."""

from __future__ import annotations

import keras

# Batch-norm settings of TF-slim MobileNet models, which ContextNet was trained with.
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def _norm_act(x, name: str, activation: str | None, norm: bool):
    if norm:
        x = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn"
        )(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}_act")(x)
    return x


def conv_bn_act(
    x,
    filters: int,
    kernel_size: int = 3,
    strides: int = 1,
    dilation_rate: int = 1,
    activation: str | None = "relu6",
    norm: bool = True,
    name: str = "conv",
):
    """Conv2D ('same' padding, no bias when normalised) -> BatchNorm -> activation.

    Layers are named `{name}_conv`, `{name}_bn` and `{name}_act`.
    """
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=not norm,
        name=f"{name}_conv",
    )(x)
    return _norm_act(x, name, activation, norm)


def depthwise_bn_act(
    x,
    kernel_size: int = 3,
    strides: int = 1,
    dilation_rate: int = 1,
    activation: str | None = "relu6",
    name: str = "dw",
):
    """DepthwiseConv2D ('same', no bias) -> BatchNorm -> activation.

    Layers are named `{name}_dwconv`, `{name}_bn` and `{name}_act`.
    """
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=False,
        name=f"{name}_dwconv",
    )(x)
    return _norm_act(x, name, activation, norm=True)


def separable_conv_bn_act(
    x,
    filters: int,
    kernel_size: int = 3,
    strides: int = 1,
    activation: str | None = "relu6",
    name: str = "sep",
):
    """Depthwise-separable conv: depthwise -> BN -> pointwise -> BN -> activation.

    There is no nonlinearity between the depthwise and the pointwise convolution, as in
    ContextNet's full-resolution branch (Poudel et al. 2018, section 2.2.1).
    """
    x = depthwise_bn_act(x, kernel_size, strides, activation=None, name=f"{name}_dw")
    return conv_bn_act(x, filters, 1, activation=activation, name=f"{name}_pw")
