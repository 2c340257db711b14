"""Group normalisation as the neural-ODE papers use it."""

from __future__ import annotations

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
