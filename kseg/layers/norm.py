"""Normalisation layers and the constants each family trains them with."""

from __future__ import annotations

import dataclasses

import keras

# torch.nn.GroupNorm's epsilon, which the official neural-ODE code trains with.
GROUP_NORM_EPSILON = 1e-5


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
    """min(32, channels) groups as in Chen et al.'s and Carrara et al.'s code, lowered to a
    divisor of `channels` when 32 does not divide it (their widths always divide)."""
    groups = min(max_groups, channels)
    while channels % groups:
        groups -= 1
    return groups


def group_norm(channels: int, name: str, epsilon: float = GROUP_NORM_EPSILON):
    """A `keras.layers.GroupNormalization` with `group_norm_groups(channels)` groups."""
    return keras.layers.GroupNormalization(group_norm_groups(channels), epsilon=epsilon, name=name)


@dataclasses.dataclass(frozen=True)
class Norm:
    """A normalisation with its constants, as the conv builders of `kseg.layers.conv` take
    it. `kind` is "batch" or "group" (`group_norm`'s groups); `momentum` is Keras's (the
    weight of the old moving statistics: PyTorch's momentum 0.1 is Keras's 0.9)."""

    kind: str = "batch"
    momentum: float = 0.99
    epsilon: float = 1e-3

    def __post_init__(self):
        if self.kind not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {self.kind!r}")

    def layer(self, channels: int, name: str) -> keras.layers.Layer:
        if self.kind == "group":
            return group_norm(channels, name, epsilon=self.epsilon)
        return keras.layers.BatchNormalization(
            momentum=self.momentum, epsilon=self.epsilon, name=name
        )


# Keras's defaults, also TF-slim's (the MobileNets ContextNet builds on) and DeepLab's.
KERAS_BATCH_NORM = Norm("batch", momentum=0.99, epsilon=1e-3)
# PyTorch's BatchNorm2d(momentum=0.1, eps=1e-5) and GroupNorm(eps=1e-5): what HRNet,
# SegNode, OCR, DenseNet, U-Net and ChoiceNet's reference code train with.
TORCH_BATCH_NORM = Norm("batch", momentum=0.9, epsilon=1e-5)
TORCH_GROUP_NORM = Norm("group", epsilon=GROUP_NORM_EPSILON)
