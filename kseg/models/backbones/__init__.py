"""Backbones built in kseg for the DeepLabV3+ models, by name.

Each builder adds a backbone to a functional graph: `build(x, depth, width_multiplier,
output_stride, prefix) -> (high, low)`, the features at `output_stride` and the stride-4
low-level features. `depth` is the backbone's depth argument (None: the paper's): the
four stage block counts of a ResNet, the number of middle-flow modules of Xception.
"""

from __future__ import annotations

from collections.abc import Callable

from kseg.models.backbones.resnet import (
    RESNET101_DEPTHS,
    load_keras_resnet_weights,
    resnet_backbone,
)
from kseg.models.backbones.xception import XCEPTION65_MIDDLE_BLOCKS, xception_backbone


def _resnet101(x, depth, width_multiplier, output_stride, prefix):
    depths = RESNET101_DEPTHS if depth is None else tuple(depth)
    return resnet_backbone(x, depths, width_multiplier, output_stride, prefix=prefix)


def _xception65(x, depth, width_multiplier, output_stride, prefix):
    blocks = XCEPTION65_MIDDLE_BLOCKS if depth is None else int(depth)
    return xception_backbone(x, blocks, width_multiplier, output_stride, prefix=prefix)


BACKBONES: dict[str, Callable] = {"resnet101": _resnet101, "xception65": _xception65}


def build_backbone(
    name: str, x, depth=None, width_multiplier: float = 1.0, output_stride: int = 16, prefix=""
):
    """`(high, low)` features of backbone `name` ("resnet101" or "xception65") on `x`."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](x, depth, width_multiplier, output_stride, prefix)


def load_backbone_weights(model, name: str, weights: str, prefix: str = "") -> int:
    """Loads pretrained backbone weights (`weights`: a file path or "imagenet") into
    `model`; only ResNet-101 has them (keras.applications'). Returns the layers copied."""
    if name != "resnet101":
        raise ValueError(
            f"kseg loads pretrained weights only into resnet101 (from keras.applications); "
            f"{name} has none. Train it from scratch or load a whole kseg model with "
            "keras.saving.load_model"
        )
    return load_keras_resnet_weights(model, weights, prefix)


__all__ = ["BACKBONES", "build_backbone", "load_backbone_weights"]
