"""ChoiceNet's building blocks (Rayhan et al., "ChoiceNet: CNN learning through choice of
multiple feature map representations"), as functional-graph builders.

- `choice_module` (Fig. 1-2): a 1x1 conv-BN-ReLU bottleneck E, then one chain of
  `chain_length` k x k conv-BN-ReLU per kernel size (3, 5, 7). Each conv of a chain is
  bypassed by an identity skip (eq. 1, the red lines of Fig. 1). A chain yields two maps
  from one forward pass: its last conv's output without the skip (B, D, G of Fig. 2) and
  with it (A, C, F). The module concatenates E and the six chain outputs: 7 x `growth`
  channels.
- `choice_block` (Fig. 3): modules densely connected as in DenseNet: each module reads the
  concatenation of the block input and every earlier module's output, and the block
  returns the concatenation of all of them.
- `choice_pool` (Fig. 4): max-pool and average-pool of the same window, concatenated
  ("both"), or one of them alone (the Table 3 ablation).

Every conv is followed by batch norm and ReLU ("composite function", section 2), without
bias; padding keeps the spatial size for the concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kseg.layers.conv import conv_norm_act
from kseg.layers.dense import densely_connected
from kseg.layers.norm import TORCH_BATCH_NORM

POOLINGS = ("max", "avg", "both")


def choice_chain(e, growth: int, kernel_size: int, length: int = 3, name: str = "chain"):
    """`length` chained k x k conv-BN-ReLU, each bypassed by an identity skip.

    Returns `(with_skip, without_skip)`: the last conv's output plus its skip (A) and the
    last conv's output alone (B). With z_0 = e, z_j = h_j(z_{j-1}) + z_{j-1}; A = z_L and
    B = h_L(z_{L-1}).
    """
    if length < 1:
        raise ValueError(f"a chain needs at least one conv, got length={length}")
    z = e
    for j in range(1, length + 1):
        h = conv_norm_act(z, growth, kernel_size, norm=TORCH_BATCH_NORM, name=f"{name}_conv{j}")
        skip = keras.layers.Add(name=f"{name}_add{j}")([h, z])
        if j < length:
            z = skip
    return skip, h


def choice_module(
    x,
    growth: int,
    kernel_sizes: Sequence[int] = (3, 5, 7),
    chain_length: int = 3,
    name: str = "module",
):
    """One ChoiceNet module (Fig. 1): `(1 + 2 * len(kernel_sizes)) * growth` channels out,
    ordered E, then (with skip, without skip) for each kernel size."""
    e = conv_norm_act(x, growth, 1, norm=TORCH_BATCH_NORM, name=f"{name}_bottleneck")
    outputs = [e]
    for k in kernel_sizes:
        outputs += choice_chain(e, growth, k, chain_length, name=f"{name}_k{k}")
    return keras.layers.Concatenate(name=f"{name}_concat")(outputs)


def choice_block(
    x,
    growth: int,
    modules: int = 3,
    kernel_sizes: Sequence[int] = (3, 5, 7),
    chain_length: int = 3,
    name: str = "block",
):
    """`modules` ChoiceNet modules densely connected (Fig. 3): the output concatenates the
    input and every module's output, C + modules * 7 * growth channels."""
    return densely_connected(
        x,
        lambda inp, i: choice_module(inp, growth, kernel_sizes, chain_length, f"{name}_m{i}"),
        modules,
        name,
    )


def choice_pool(x, pooling: str = "both", global_pool: bool = False, name: str = "pool"):
    """2x2 stride-2 max-pool, average-pool, or both concatenated (max first; Fig. 4); with
    `global_pool`, over the whole map: (N, C) or (N, 2C)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    kl = keras.layers
    layers = {
        "max": kl.GlobalMaxPooling2D if global_pool else kl.MaxPooling2D,
        "avg": kl.GlobalAveragePooling2D if global_pool else kl.AveragePooling2D,
    }
    args = () if global_pool else (2,)
    kinds = ("max", "avg") if pooling == "both" else (pooling,)
    pooled = [layers[k](*args, name=f"{name}_{k}")(x) for k in kinds]
    if len(pooled) == 1:
        return pooled[0]
    return keras.layers.Concatenate(name=f"{name}_concat")(pooled)
