"""DenseNet's dense block (Huang et al. 2017), as a functional-graph builder."""

from __future__ import annotations

from collections.abc import Callable

import keras

from kseg.layers.conv import norm_act_conv
from kseg.layers.norm import TORCH_BATCH_NORM


def densely_connected(x, layer: Callable, count: int, name: str):
    """Dense connectivity (DenseNet, and ChoiceNet's Fig. 3): `layer(inputs, i)` for
    i = 1..count, each reading the concatenation of `x` and every earlier output (named
    `{name}_in{i}`); returns the concatenation of all of them (`{name}_out`)."""
    features = [x]
    for i in range(1, count + 1):
        inp = (
            features[0]
            if len(features) == 1
            else keras.layers.Concatenate(name=f"{name}_in{i}")(features)
        )
        features.append(layer(inp, i))
    return keras.layers.Concatenate(name=f"{name}_out")(features)


def dense_block(x, growth: int, layers: int = 4, bottleneck: int = 4, name: str = "dense"):
    """`layers` DenseNet-BC layers (BN-ReLU-1x1 conv to bottleneck x growth, BN-ReLU-3x3
    conv to growth), each reading the concatenation of the input and all earlier layers'
    outputs. Returns that concatenation: C + layers x growth channels."""

    def layer(y, i):
        if bottleneck:
            y = norm_act_conv(
                y, bottleneck * growth, 1, norm=TORCH_BATCH_NORM, name=f"{name}_l{i}_1x1"
            )
        return norm_act_conv(y, growth, 3, norm=TORCH_BATCH_NORM, name=f"{name}_l{i}_3x3")

    return densely_connected(x, layer, layers, name)
