"""DeepLab's ImageNet weights of Xception-65 under kseg's layer names.

DeepLab published them as a TensorFlow checkpoint (`xception_65_imagenet`); timm's
`xception65` holds them in PyTorch (`tf_xception_65-c9ae96e8.pth`, or the hub's
`model.safetensors`), with its own module names: `stem.{0,1}` for the two stem convs,
`blocks.{i}` for the Xception modules in order (3 entry, 16 middle, 2 exit), each with
`stack.conv{1,2,3}` separable convs (`conv_dw`, `bn_dw`, `conv_pw`, `bn_pw`) and a
`shortcut` (`conv`, `bn`). `keras_weights` turns them into kseg's weight paths
(`xception_middle3_sep2_dw_bn/gamma`); the classifier (`head.fc`) is left out.
"""

from __future__ import annotations

import re

import numpy as np

from kseg.models.backbones.xception import XCEPTION65_MIDDLE_BLOCKS
from kseg.models.torch_checkpoint import BATCH_NORM_VARIABLES, keras_kernel

_SEPARABLE = {"conv_dw": "dw", "bn_dw": "dw_bn", "conv_pw": "pw", "bn_pw": "pw_bn"}
# blocks.{i}.stack.conv{j}.{part} or blocks.{i}.shortcut.{conv,bn}
_BLOCK = re.compile(r"blocks\.(\d+)\.(?:stack\.conv([123])\.(\w+)|shortcut\.(conv|bn))")


def block_names(middle_blocks: int) -> list[str]:
    """kseg's names of the Xception modules, in timm's order of `blocks.{i}`."""
    middle = [f"middle{i + 1}" for i in range(middle_blocks)]
    return ["entry1", "entry2", "entry3", *middle, "exit1", "exit2"]


def keras_layer(module: str, blocks: list[str]) -> str | None:
    """kseg's layer name (without the model's prefix) for timm's module path `module`."""
    match = re.fullmatch(r"stem\.([01])\.(conv|bn)", module)
    if match:
        conv = f"xception_conv{int(match.group(1)) + 1}"
        return conv if match.group(2) == "conv" else f"{conv}_bn"
    match = re.fullmatch(
        r"blocks\.(\d+)\.(?:stack\.conv([123])\.(\w+)|shortcut\.(conv|bn))", module
    )
    if match is None or int(match.group(1)) >= len(blocks):
        return None
    block = f"xception_{blocks[int(match.group(1))]}"
    if match.group(4):
        return f"{block}_shortcut" if match.group(4) == "conv" else f"{block}_shortcut_bn"
    part = _SEPARABLE.get(match.group(3))
    return part and f"{block}_sep{match.group(2)}_{part}"


def keras_weights(state: dict[str, np.ndarray], prefix: str = "") -> tuple[dict, list[str]]:
    """({kseg weight path: array}, the names of `state` that have no kseg layer). The
    number of middle-flow modules is read from the checkpoint."""
    indices = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    blocks = block_names(max(indices) + 1 - 5) if indices else []
    weights, unused = {}, []
    for name, value in state.items():
        module, _, tensor = name.rpartition(".")
        if tensor == "num_batches_tracked":
            continue
        layer = keras_layer(module, blocks)
        if layer is None:
            unused.append(name)
        elif layer.endswith("_bn"):
            weights[f"{prefix}{layer}/{BATCH_NORM_VARIABLES[tensor]}"] = value
        else:
            weights[f"{prefix}{layer}/kernel"] = keras_kernel(value, layer.endswith("_dw"))
    return weights, unused


def load_xception_weights(model, path: str, prefix: str = "") -> int:
    """Copies DeepLab's Xception-65 ImageNet weights, from timm's `xception65` checkpoint
    at `path`, into the Xception of `model` (its layers named `{prefix}xception_*`).

    The weights were trained with every side of a strided conv padded: the model must be
    built so (`convention="pytorch"`). Raises a ValueError naming the first tensor that
    has no weight of its shape in the model, or the first Xception weight that no tensor
    fills, before copying any. Returns the number of tensors copied."""
    from kseg.models.torch_checkpoint import read_state_dict

    if f"{prefix}xception_conv1_pad" not in {layer.name for layer in model.layers}:
        raise ValueError(
            f"{path}: DeepLab's Xception weights were trained with strided convs padded on "
            "every side; build the model with convention='pytorch' to load them"
        )
    weights, _ = keras_weights(read_state_dict(path), prefix)
    ours = {w.path: w for w in model.weights if w.path.startswith(f"{prefix}xception_")}
    misfits = [n for n, v in weights.items() if n not in ours or ours[n].shape != v.shape]
    unfilled = sorted(ours.keys() - weights.keys())
    if misfits or unfilled:
        problem = (
            f"{misfits[0]} {weights[misfits[0]].shape} has no weight of its shape in {model.name}"
            if misfits
            else f"{model.name}'s {unfilled[0]} has no tensor there"
        )
        raise ValueError(
            f"{path}: {problem}; load it into the full Xception-65 "
            f"({XCEPTION65_MIDDLE_BLOCKS} middle modules, width 1.0)"
        )
    for name, value in weights.items():
        ours[name].assign(value)
    return len(weights)
