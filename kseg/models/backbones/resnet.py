"""ResNet-101 (He et al. 2016, v1 bottlenecks) as a DeepLab backbone with dilation.

The graph mirrors `keras.applications.ResNet101` layer for layer and name for name (with
an optional prefix), so its ImageNet weights load into it (`load_keras_resnet_weights`).
Two differences, both exact under the weight conversion:
- Convs followed by batch norm carry no bias (a bias before a batch norm only shifts the
  moving mean; the loader folds it in there).
- The input is kseg's RGB image in [0, 1]. A fixed `Rescaling` maps it to the
  "caffe" input of those weights (x 255 minus the ImageNet mean) and the loader reverses
  the first conv's input channels, which the weights expect in BGR order.

Output stride: once the network reaches `output_stride`, later stages keep the
resolution and dilate their 3x3 convs instead (DeepLabV3, Chen et al. 2017, section 3.2);
the last stage's blocks multiply the rate by `multi_grid` (1, 2, 4), the setting DeepLabV3
found best (section 4.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from kseg.layers.conv import conv_norm_act
from kseg.layers.norm import Norm

RESNET101_DEPTHS = (3, 4, 23, 3)
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)  # keras.applications "caffe" mode
BATCH_NORM = Norm("batch", momentum=0.99, epsilon=1.001e-5)  # keras.applications ResNet
KERAS_WEIGHTS_FILE = "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _bottleneck(x, filters: int, strides: int, rate: int, shortcut_conv: bool, name: str):
    """keras.applications' `residual_block_v1`: 1x1 (strided) -> 3x3 -> 1x1 (4 x filters)."""
    shortcut = x
    if shortcut_conv:
        shortcut = _conv(x, 4 * filters, 1, strides, None, f"{name}_0")
    y = _conv(x, filters, 1, strides, "relu", f"{name}_1")
    y = _conv(y, filters, 3, 1, "relu", f"{name}_2", rate=rate)
    y = _conv(y, 4 * filters, 1, 1, None, f"{name}_3")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _conv(x, filters, kernel, strides, activation, name, rate=1, padding=None):
    """conv-BN(-ReLU), padded as keras.applications pads ("valid" for 1x1 convs)."""
    padding = padding or ("same" if kernel > 1 else "valid")
    return conv_norm_act(
        x,
        filters,
        kernel,
        strides,
        norm=BATCH_NORM,
        activation=activation,
        dilation_rate=rate,
        padding=padding,
        name=name,
    )


def resnet_backbone(
    x,
    depths: Sequence[int] = RESNET101_DEPTHS,
    width_multiplier: float = 1.0,
    output_stride: int = 16,
    multi_grid: Sequence[int] = (1, 2, 4),
    prefix: str = "",
):
    """Adds a ResNet to the graph of the image `x` (RGB in [0, 1]).

    Returns `(high, low)`: the last stage's features at `output_stride` (2048 channels at
    full width) and the first stage's at stride 4 (256 channels), DeepLabV3+'s low-level
    features.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    if len(depths) != 4 or min(depths) < 1:
        raise ValueError(f"depths must be four positive block counts, got {tuple(depths)!r}")
    base = max(1, round(64 * width_multiplier))
    mean = np.asarray(IMAGENET_MEAN_RGB, "float32")
    x = keras.layers.Rescaling(255.0, offset=(-mean).tolist(), name=f"{prefix}preprocess")(x)
    x = keras.layers.ZeroPadding2D(3, name=f"{prefix}conv1_pad")(x)
    x = _conv(x, base, 7, 2, "relu", f"{prefix}conv1", padding="valid")
    x = keras.layers.ZeroPadding2D(1, name=f"{prefix}pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name=f"{prefix}pool1_pool")(x)
    stride, rate, low = 4, 1, None
    for stage, (blocks, stage_stride) in enumerate(zip(depths, (1, 2, 2, 2), strict=True)):
        if stride * stage_stride > output_stride:
            rate *= stage_stride
            stage_stride = 1
        stride *= stage_stride
        grid = multi_grid if stage == 3 else (1,)
        for b in range(blocks):
            x = _bottleneck(
                x,
                base * 2**stage,
                stage_stride if b == 0 else 1,
                rate * grid[b % len(grid)],
                shortcut_conv=b == 0,
                name=f"{prefix}conv{stage + 2}_block{b + 1}",
            )
        if stage == 0:
            low = x
    return x, low


def load_keras_resnet_weights(model: keras.Model, weights: str, prefix: str = "") -> int:
    """Copies `keras.applications.ResNet101` weights into the ResNet of `model`.

    `weights` is a path to the no-top weights file (what `keras.applications` keeps in
    `~/.keras/models/resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5`) or
    "imagenet": that file in the Keras cache, downloaded by Keras if it is missing. Conv
    biases are folded into the following batch norm's moving mean and the first conv
    takes RGB instead of BGR (see the module docstring). Returns the number of layers
    copied; raises if a layer is missing or of another shape.
    """
    source = keras.applications.ResNet101(
        include_top=False, weights=weights, input_shape=(None, None, 3)
    )
    copied = 0
    for layer in source.layers:
        if not layer.weights:
            continue
        try:
            target = model.get_layer(f"{prefix}{layer.name}")
        except ValueError:
            raise ValueError(
                f"{model.name} has no layer {prefix}{layer.name!r} to take ImageNet weights; "
                "load them only into the full-depth ResNet-101 (depths (3, 4, 23, 3), "
                "width 1.0)"
            ) from None
        values = [np.asarray(w) for w in layer.get_weights()]
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = values
            if layer.name == "conv1_conv":
                kernel = kernel[:, :, ::-1]  # BGR -> RGB input channels
            target.set_weights([kernel])
            bn = model.get_layer(f"{prefix}{layer.name[: -len('conv')]}bn")
            bn_source = source.get_layer(layer.name[: -len("conv")] + "bn")
            gamma, beta, mean, var = (np.asarray(w) for w in bn_source.get_weights())
            bn.set_weights([gamma, beta, mean - bias, var])
            copied += 2
        elif not isinstance(layer, keras.layers.BatchNormalization):
            target.set_weights(values)
            copied += 1
    return copied
