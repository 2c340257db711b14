"""DeepLab's modified aligned Xception-65 (Chen et al. 2018, DeepLabV3+, section 3.2).

Xception (Chollet 2017) as DeepLabV3+ modifies it: every max pooling becomes a strided
depthwise-separable conv, the middle flow repeats 16 times (65 layers) and batch norm
follows every depthwise conv. Each Xception module is three separable convs (3x3
depthwise -> BN -> 1x1 pointwise -> BN), the last one strided, with a shortcut that is a
strided 1x1 conv + BN ("conv"), the identity ("sum") or absent ("none"). As in DeepLab's
reference definition, a ReLU precedes each separable conv, except in the last exit-flow
module, whose separable convs carry ReLUs after their depthwise and pointwise parts.

| flow          | modules | channels            | shortcut | stride |
|---------------|---------|---------------------|----------|--------|
| entry conv1   | -       | 32 (3x3, s2), 64    | -        | 2      |
| entry block1  | 1       | 128, 128, 128       | conv     | 2      |
| entry block2  | 1       | 256, 256, 256       | conv     | 2      |
| entry block3  | 1       | 728, 728, 728       | conv     | 2      |
| middle        | 16      | 728, 728, 728       | sum      | 1      |
| exit block1   | 1       | 728, 1024, 1024     | conv     | 2      |
| exit block2   | 1       | 1536, 1536, 2048    | none     | 1      |

Low-level features (stride 4) are entry block2's second separable conv, before the
strided third, as DeepLab takes them. Once the network reaches `output_stride`, strides
become 1 and later convs dilate (the rate grows by the stride it replaces). The input is
kseg's RGB image in [0, 1], mapped to Xception's [-1, 1] by a fixed `Rescaling`.

Strided convs pad as Keras' "same" (the odd row and column at the bottom and right) or,
with `padding="symmetric"`, on every side as DeepLab's TensorFlow code (its explicit
padding) and timm's PyTorch port of its ImageNet weights (`xception_torch`) do.
"""

from __future__ import annotations

import keras

from kseg.layers.conv import pad_symmetric
from kseg.layers.norm import BatchNormalization

XCEPTION65_MIDDLE_BLOCKS = 16
BN_EPSILON = 1e-3  # DeepLab's batch norm


def _bn(x, name: str):
    return BatchNormalization(epsilon=BN_EPSILON, name=name)(x)


def _separable(
    x, filters: int, strides: int, rate: int, relu_inside: bool, padding: str, name: str
):
    x, padding = pad_symmetric(x, 3, strides, rate, padding, f"{name}_dw")
    x = keras.layers.DepthwiseConv2D(
        3, strides=strides, dilation_rate=rate, padding=padding, use_bias=False, name=f"{name}_dw"
    )(x)
    x = _bn(x, f"{name}_dw_bn")
    if relu_inside:
        x = keras.layers.Activation("relu", name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = _bn(x, f"{name}_pw_bn")
    if relu_inside:
        x = keras.layers.Activation("relu", name=f"{name}_pw_relu")(x)
    return x


def xception_module(
    x,
    channels: tuple[int, int, int],
    shortcut: str,
    strides: int,
    rate: int,
    relu_inside: bool = False,
    padding: str = "same",
    name: str = "module",
):
    """One Xception module; returns `(output, second separable conv's output)`."""
    y, second = x, None
    for i, filters in enumerate(channels):
        if not relu_inside:
            y = keras.layers.Activation("relu", name=f"{name}_sep{i + 1}_relu")(y)
        stride = strides if i == 2 else 1
        y = _separable(y, filters, stride, rate, relu_inside, padding, f"{name}_sep{i + 1}")
        if i == 1:
            second = y
    if shortcut == "conv":
        s = keras.layers.Conv2D(
            channels[-1], 1, strides=strides, use_bias=False, name=f"{name}_shortcut"
        )(x)
        y = keras.layers.Add(name=f"{name}_add")([_bn(s, f"{name}_shortcut_bn"), y])
    elif shortcut == "sum":
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    elif shortcut != "none":
        raise ValueError(f"shortcut must be 'conv', 'sum' or 'none', got {shortcut!r}")
    return y, second


def xception_backbone(
    x,
    middle_blocks: int = XCEPTION65_MIDDLE_BLOCKS,
    width_multiplier: float = 1.0,
    output_stride: int = 16,
    padding: str = "same",
    prefix: str = "",
):
    """Adds an aligned Xception to the graph of the image `x` (RGB in [0, 1]); `padding`
    of its strided convs: "same" or "symmetric" (see the module docstring).

    Returns `(high, low)`: exit-flow features at `output_stride` (2048 channels at full
    width) and the stride-4 low-level features (256 channels).
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    if middle_blocks < 0:
        raise ValueError(f"middle_blocks must be >= 0, got {middle_blocks!r}")

    def ch(c: int) -> int:
        return max(1, round(c * width_multiplier))

    p = f"{prefix}xception_"
    x = keras.layers.Rescaling(2.0, offset=-1.0, name=f"{prefix}preprocess")(x)
    x, first = pad_symmetric(x, 3, 2, 1, padding, f"{p}conv1")
    x = keras.layers.Conv2D(ch(32), 3, strides=2, padding=first, use_bias=False, name=f"{p}conv1")(
        x
    )
    x = keras.layers.Activation("relu", name=f"{p}conv1_relu")(_bn(x, f"{p}conv1_bn"))
    x = keras.layers.Conv2D(ch(64), 3, padding="same", use_bias=False, name=f"{p}conv2")(x)
    x = keras.layers.Activation("relu", name=f"{p}conv2_relu")(_bn(x, f"{p}conv2_bn"))
    blocks = [
        ("entry1", (128, 128, 128), "conv", 2, False),
        ("entry2", (256, 256, 256), "conv", 2, False),
        ("entry3", (728, 728, 728), "conv", 2, False),
        *[(f"middle{i + 1}", (728, 728, 728), "sum", 1, False) for i in range(middle_blocks)],
        ("exit1", (728, 1024, 1024), "conv", 2, False),
        ("exit2", (1536, 1536, 2048), "none", 1, True),
    ]
    stride, rate, low = 2, 1, None
    for name, channels, shortcut, strides, relu_inside in blocks:
        if stride == output_stride:
            block_rate, rate, strides = rate, rate * strides, 1
        else:
            block_rate = rate
            stride *= strides
        channels = tuple(ch(c) for c in channels)
        x, second = xception_module(
            x, channels, shortcut, strides, block_rate, relu_inside, padding, p + name
        )
        if name == "entry2":
            low = second
    return x, low
