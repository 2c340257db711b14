"""The pre-activation residual block with group norm of the neural-ODE image classifiers."""

from __future__ import annotations

import keras

from kseg.layers.norm import group_norm


def preact_residual_block(x, filters: int, strides: int = 1, name: str = "block"):
    """GroupNorm-ReLU-Conv3x3-GroupNorm-ReLU-Conv3x3 plus the input (He et al. 2016b).

    The `ResBlock` of Chen et al. 2018 and Carrara et al. 2019 (official code
    `fabiocarrara/neural-ode-features`): convs without bias, GroupNorm with min(32, C)
    groups. When the block changes stride or width, the shortcut is a 1x1 conv (no bias,
    stride `strides`) of the normalised, activated input. Layers are named `{name}_*`.
    """
    channels = x.shape[-1]
    pre = keras.layers.ReLU(name=f"{name}_relu1")(group_norm(channels, f"{name}_norm1")(x))
    shortcut = x
    if strides != 1 or channels != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_shortcut"
        )(pre)
    y = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1"
    )(pre)
    y = keras.layers.ReLU(name=f"{name}_relu2")(group_norm(filters, f"{name}_norm2")(y))
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])
