"""The convolution + normalisation + activation builders every family's blocks are made of.

Each builder takes the normalisation (a `kseg.layers.norm.Norm` with the family's
constants, or None) and the activation (a Keras activation name, or None) and names its
layers `{name}_conv` (`{name}_dwconv` for a depthwise conv), `{name}_bn` and
`{name}_relu` for ReLU or `{name}_act` for any other activation.

`padding="symmetric"` is PyTorch's convolution padding, `(kernel_size - 1) // 2` pixels
(times the dilation) on every side: for a strided conv it differs from Keras' "same", which
puts the odd pixel at the bottom and right only. Networks that load weights trained in
PyTorch use it so that their features equal the original's (a `{name}_pad` layer, then a
"valid" conv); at stride 1 the two are the same.
"""

from __future__ import annotations

import keras

from kseg.layers.norm import KERAS_BATCH_NORM, Norm

# How a network pads its strided convs, by the convention of the code whose weights it
# takes: "keras" pads as Keras' "same"; "pytorch" on every side, as PyTorch (and
# TensorFlow code with explicit padding, DeepLab's) does.
CONVENTIONS = {"keras": "same", "pytorch": "symmetric"}


def stride_padding(convention: str) -> str:
    """The strided convs' padding under `convention` (see `CONVENTIONS`)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {tuple(CONVENTIONS)}, got {convention!r}")
    return CONVENTIONS[convention]


def pad_symmetric(x, kernel_size: int, strides: int, dilation_rate: int, padding: str, name):
    """`(x, padding)` for a conv of `padding` "same", "valid" or "symmetric": for
    "symmetric" at a stride above 1, `x` padded on every side by a `{name}_pad` layer and
    "valid"; at stride 1, "same" (which is symmetric there)."""
    if padding != "symmetric":
        return x, padding
    pad = dilation_rate * (kernel_size - 1) // 2
    if strides == 1 or not pad:
        return x, "same"
    return keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x), "valid"


def _norm_act(x, norm: Norm | None, activation: str | None, name: str):
    if norm is not None:
        x = norm.layer(x.shape[-1], f"{name}_bn")(x)
    if activation is not None:
        suffix = "relu" if activation == "relu" else "act"
        x = keras.layers.Activation(activation, name=f"{name}_{suffix}")(x)
    return x


def conv_norm_act(
    x,
    filters: int,
    kernel_size: int = 3,
    strides: int = 1,
    *,
    norm: Norm | None = KERAS_BATCH_NORM,
    activation: str | None = "relu",
    dilation_rate: int = 1,
    padding: str = "same",
    name: str = "conv",
):
    """Conv2D (a bias only without a norm) -> norm -> activation. `padding`: "same",
    "valid" or "symmetric" (PyTorch's, see the module docstring)."""
    x, padding = pad_symmetric(x, kernel_size, strides, dilation_rate, padding, name)
    conv = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        use_bias=norm is None,
        name=f"{name}_conv",
    )
    return _norm_act(conv(x), norm, activation, name)


def norm_act_conv(
    x,
    filters: int,
    kernel_size: int = 3,
    *,
    norm: Norm = KERAS_BATCH_NORM,
    activation: str = "relu",
    name: str = "conv",
):
    """The pre-activation order (He et al. 2016): norm -> activation -> Conv2D ('same', no
    bias)."""
    x = _norm_act(x, norm, activation, name)
    return keras.layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)


def depthwise_norm_act(
    x,
    kernel_size: int = 3,
    strides: int = 1,
    *,
    norm: Norm = KERAS_BATCH_NORM,
    activation: str | None = "relu",
    dilation_rate: int = 1,
    name: str = "dw",
):
    """DepthwiseConv2D ('same', no bias) -> norm -> activation."""
    conv = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        name=f"{name}_dwconv",
    )
    return _norm_act(conv(x), norm, activation, name)


def separable_conv_norm_act(
    x,
    filters: int,
    kernel_size: int = 3,
    strides: int = 1,
    *,
    norm: Norm = KERAS_BATCH_NORM,
    activation: str | None = "relu",
    name: str = "sep",
):
    """Depthwise-separable conv: depthwise -> norm -> pointwise -> norm -> activation.

    There is no nonlinearity between the depthwise and the pointwise convolution, as in
    ContextNet's full-resolution branch (Poudel et al. 2018, section 2.2.1).
    """
    x = depthwise_norm_act(x, kernel_size, strides, norm=norm, activation=None, name=f"{name}_dw")
    return conv_norm_act(x, filters, 1, norm=norm, activation=activation, name=f"{name}_pw")


# The names `kseg.layers` exported first, with their signatures and defaults (Keras's batch
# norm, ReLU6: ContextNet's): `conv_norm_act` and its forms with those arguments.
def conv_bn_act(
    x,
    filters,
    kernel_size=3,
    strides=1,
    dilation_rate=1,
    activation="relu6",
    norm=True,
    name="conv",
):
    norm = KERAS_BATCH_NORM if norm else None
    return conv_norm_act(
        x,
        filters,
        kernel_size,
        strides,
        norm=norm,
        activation=activation,
        dilation_rate=dilation_rate,
        name=name,
    )


def depthwise_bn_act(x, kernel_size=3, strides=1, dilation_rate=1, activation="relu6", name="dw"):
    return depthwise_norm_act(
        x, kernel_size, strides, activation=activation, dilation_rate=dilation_rate, name=name
    )


def separable_conv_bn_act(x, filters, kernel_size=3, strides=1, activation="relu6", name="sep"):
    return separable_conv_norm_act(
        x, filters, kernel_size, strides, activation=activation, name=name
    )
