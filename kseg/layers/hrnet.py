"""HRNet's building blocks (Wang et al. 2019, "Deep High-Resolution Representation
Learning for Visual Recognition"), as functional-graph builders.

A stage of HRNet keeps parallel branches at 1/4, 1/8, 1/16 and 1/32 of the image, each
a chain of residual blocks, and fuses them after every module: branch j reaches branch i
through a 1x1 conv and bilinear upsampling (j lower resolution than i) or a chain of
stride-2 3x3 convs (j higher), and the results are summed. Layer names follow
`HRNet/HRNet-Semantic-Segmentation` (lib/models/seg_hrnet.py): `branch{i}_block{k}`,
`fuse{i}_{j}`, `transition{i}`.

Two module forms:
- `hr_module(..., preact=False)`: HRNet's own, post-activation basic blocks
  (conv-BN-ReLU-conv-BN + identity, ReLU) and a ReLU after the fused sum.
- `hr_module(..., preact=True)`: the residual form of SegNode's Baseline and SegNode's ODE
  function (Khoshsirat & Kambhamettu, Fig. 2: "each small block consists of one set of
  batch normalization, ReLU and convolutional layers"): pre-activation basic blocks
  (He et al. 2016, BN-ReLU-conv twice + identity) and no ReLU after the sum, so the module
  can be a residual update or a derivative of either sign.

Every builder with a stride-2 conv takes `padding`: "same" (Keras') or "symmetric"
(PyTorch's, which HRNet's published weights were trained with; `kseg.layers.conv`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kseg.layers.conv import conv_norm_act, norm_act_conv
from kseg.layers.norm import TORCH_BATCH_NORM, TORCH_GROUP_NORM, Norm
from kseg.layers.resize import ResizeLike

# HRNet trains with PyTorch's batch norm; the neural-ODE code of Chen et al. and Carrara
# et al. with group norm (min(32, channels) groups). SegNode's `norm` argument names one.
NORMS = {"batch": TORCH_BATCH_NORM, "group": TORCH_GROUP_NORM}


def basic_block(x, filters: int, norm: Norm = TORCH_BATCH_NORM, name: str = "block"):
    """ResNet basic block, post-activation: conv-BN-ReLU-conv-BN, + identity, ReLU."""
    y = conv_norm_act(x, filters, 3, norm=norm, name=f"{name}_1")
    y = conv_norm_act(y, filters, 3, norm=norm, activation=None, name=f"{name}_2")
    return _add_relu(x, y, norm, name)


def _add_relu(x, y, norm: Norm, name: str):
    """A post-activation block's end: `x` (projected by a 1x1 conv-BN when its width is not
    `y`'s) plus `y`, then ReLU."""
    if x.shape[-1] != y.shape[-1]:
        x = conv_norm_act(x, y.shape[-1], 1, norm=norm, activation=None, name=f"{name}_down")
    x = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def preact_basic_block(x, filters: int, norm: Norm = TORCH_BATCH_NORM, name: str = "block"):
    """Pre-activation basic block (He et al. 2016): BN-ReLU-conv twice, + identity."""
    y = norm_act_conv(x, filters, 3, norm=norm, name=f"{name}_1")
    y = norm_act_conv(y, filters, 3, norm=norm, name=f"{name}_2")
    return keras.layers.Add(name=f"{name}_add")([x, y])


def bottleneck_block(x, filters: int, norm: Norm = TORCH_BATCH_NORM, name: str = "block"):
    """ResNet bottleneck (expansion 4): 1x1-3x3-1x1 conv-BN(-ReLU), + projected identity."""
    out = 4 * filters
    y = conv_norm_act(x, filters, 1, norm=norm, name=f"{name}_1")
    y = conv_norm_act(y, filters, 3, norm=norm, name=f"{name}_2")
    y = conv_norm_act(y, out, 1, norm=norm, activation=None, name=f"{name}_3")
    return _add_relu(x, y, norm, name)


def hr_stem(
    x, filters: int = 64, norm: Norm = TORCH_BATCH_NORM, padding: str = "same", name="stem"
):
    """Two stride-2 3x3 conv-BN-ReLU: the image at 1/4 resolution."""
    x = conv_norm_act(x, filters, 3, 2, norm=norm, padding=padding, name=f"{name}1")
    return conv_norm_act(x, filters, 3, 2, norm=norm, padding=padding, name=f"{name}2")


def hr_layer1(
    x, blocks: int = 4, filters: int = 64, norm: Norm = TORCH_BATCH_NORM, name: str = "layer1"
):
    """HRNet's stage 1: `blocks` bottlenecks to 4 * `filters` channels at 1/4 resolution."""
    for k in range(blocks):
        x = bottleneck_block(x, filters, norm=norm, name=f"{name}_block{k + 1}")
    return x


def strided_chain(
    x,
    filters: int,
    steps: int,
    norm=TORCH_BATCH_NORM,
    final_relu=True,
    padding: str = "same",
    name="down",
):
    """`steps` stride-2 3x3 convs, the last to `filters` channels and the others keeping
    the input's (HRNet's fuse and transition form); ReLU between, and after the last one
    if `final_relu`."""
    channels = x.shape[-1]
    for k in range(steps):
        last = k == steps - 1
        x = conv_norm_act(
            x,
            filters if last else channels,
            3,
            2,
            norm=norm,
            activation="relu" if final_relu or not last else None,
            padding=padding,
            name=f"{name}_{k + 1}",
        )
    return x


def hr_transition(
    xs: Sequence,
    channels: Sequence[int],
    norm: Norm = TORCH_BATCH_NORM,
    padding: str = "same",
    name="transition",
):
    """From the branches `xs` of one stage to `len(channels)` branches of the next.

    Existing branches get a 3x3 conv-BN-ReLU where the width changes; each new branch is
    made from the lowest-resolution one by stride-2 convs (seg_hrnet's transition layer).
    """
    out = []
    for i, c in enumerate(channels):
        if i < len(xs):
            x = xs[i]
            if x.shape[-1] != c:
                x = conv_norm_act(x, c, 3, norm=norm, name=f"{name}{i}")
            out.append(x)
        else:
            steps = i + 1 - len(xs)
            out.append(
                strided_chain(xs[-1], c, steps, norm=norm, padding=padding, name=f"{name}{i}")
            )
    return out


def hr_fuse(
    xs: Sequence,
    norm: Norm = TORCH_BATCH_NORM,
    relu: bool = True,
    padding: str = "same",
    interpolation: str = "bilinear",
    name: str = "fuse",
):
    """Multi-resolution fusion: every branch i receives the sum over all branches j.
    `interpolation` of the upsamplings (`kseg.layers.resize.INTERPOLATIONS`): "bilinear"
    (HRNet's segmentation code; "bilinear_align_corners" its later code's) or "nearest"
    (its ImageNet classification code)."""
    fused = []
    for i, xi in enumerate(xs):
        terms = []
        for j, xj in enumerate(xs):
            if j == i:
                terms.append(xj)
            elif j > i:
                y = conv_norm_act(
                    xj, xi.shape[-1], 1, norm=norm, activation=None, name=f"{name}{i}_{j}"
                )
                up = ResizeLike(interpolation, name=f"{name}{i}_{j}_up")
                terms.append(up([y, xi]))
            else:
                y = strided_chain(
                    xj,
                    xi.shape[-1],
                    i - j,
                    norm=norm,
                    final_relu=False,
                    padding=padding,
                    name=f"{name}{i}_{j}",
                )
                terms.append(y)
        y = keras.layers.Add(name=f"{name}{i}_sum")(terms)
        if relu:
            y = keras.layers.ReLU(name=f"{name}{i}_relu")(y)
        fused.append(y)
    return fused


def hr_module(
    xs: Sequence,
    blocks: int = 4,
    preact: bool = False,
    norm: Norm = TORCH_BATCH_NORM,
    padding: str = "same",
    interpolation: str = "bilinear",
    name: str = "module",
):
    """One high-resolution module: `blocks` basic blocks on every branch, then fusion
    (`hr_fuse`, with its `interpolation`).

    `preact=False` is HRNet's module; `preact=True` the residual form (see the module
    docstring). Returns the list of branch outputs, same shapes as `xs`.
    """
    block = preact_basic_block if preact else basic_block
    ys = []
    for i, x in enumerate(xs):
        for k in range(blocks):
            x = block(x, x.shape[-1], norm=norm, name=f"{name}_branch{i}_block{k + 1}")
        ys.append(x)
    if len(ys) == 1:
        return ys
    return hr_fuse(
        ys,
        norm=norm,
        relu=not preact,
        padding=padding,
        interpolation=interpolation,
        name=f"{name}_fuse",
    )


def concat_branches(xs: Sequence, interpolation: str = "bilinear", name: str = "concat"):
    """HRNetV2's representation: all branches upsampled to the first one's size (by
    `interpolation`, as `hr_fuse`'s), concatenated."""
    ups = [xs[0]] + [
        ResizeLike(interpolation, name=f"{name}_up{i}")([x, xs[0]]) for i, x in enumerate(xs) if i
    ]
    return keras.layers.Concatenate(name=name)(ups)
