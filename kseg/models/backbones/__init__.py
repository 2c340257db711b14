"""Backbones built in kseg for the DeepLabV3+ models, by name.

Each builder adds a backbone to a functional graph: `build(x, depth, width_multiplier,
output_stride, prefix, padding) -> (high, low)`, the features at `output_stride` and the
stride-4 low-level features. `depth` is the backbone's depth argument (None: the paper's):
the four stage block counts of a ResNet, the number of middle-flow modules of Xception.
`padding` is the strided convs' (`kseg.layers.conv.stride_padding`); ResNet's are 1x1 or
explicitly padded, the same under either.
"""

from __future__ import annotations

from collections.abc import Callable

from kseg.models.backbones.resnet import (
    RESNET101_DEPTHS,
    load_keras_resnet_weights,
    resnet_backbone,
)
from kseg.models.backbones.xception import XCEPTION65_MIDDLE_BLOCKS, xception_backbone
from kseg.models.backbones.xception_torch import load_xception_weights


def _resnet101(x, depth, width_multiplier, output_stride, prefix, padding):
    depths = RESNET101_DEPTHS if depth is None else tuple(depth)
    return resnet_backbone(x, depths, width_multiplier, output_stride, prefix=prefix)


def _xception65(x, depth, width_multiplier, output_stride, prefix, padding):
    blocks = XCEPTION65_MIDDLE_BLOCKS if depth is None else int(depth)
    return xception_backbone(x, blocks, width_multiplier, output_stride, padding, prefix)


BACKBONES: dict[str, Callable] = {"resnet101": _resnet101, "xception65": _xception65}


def build_backbone(
    name: str,
    x,
    depth=None,
    width_multiplier: float = 1.0,
    output_stride: int = 16,
    prefix="",
    padding: str = "same",
):
    """`(high, low)` features of backbone `name` ("resnet101" or "xception65") on `x`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](x, depth, width_multiplier, output_stride, prefix, padding)


def load_backbone_weights(model, name: str, weights: str, prefix: str = "") -> int:
    """Loads pretrained backbone weights into `model`: for ResNet-101 keras.applications'
    (`weights`: their file or "imagenet"), for Xception-65 DeepLab's ImageNet weights as
    timm's `xception65` holds them (`weights`: its .pth or .safetensors file). Returns the
    number of tensors (ResNet: layers) copied."""
    if name == "xception65":
        return load_xception_weights(model, weights, prefix)
    return load_keras_resnet_weights(model, weights, prefix)


def loaded_backbone(name: str, weights: str, count: int, prefix: str = "") -> str:
    """What a run prints of the backbone weights a model loaded at construction."""
    unit = "tensors" if name == "xception65" else "layers"
    stream = f"{prefix.rstrip('_')} " if prefix else ""
    return f"Backbone {stream}{name}: ImageNet weights from {weights} ({count} {unit})"


__all__ = ["BACKBONES", "build_backbone", "load_backbone_weights", "loaded_backbone"]
