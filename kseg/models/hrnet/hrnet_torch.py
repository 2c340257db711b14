"""HRNet's PyTorch weights under kseg's layer names.

HRNet's published checkpoints name their tensors as the PyTorch modules hold them:
`HRNet/HRNet-Image-Classification`'s ImageNet weights (the `hrnetv2_w48_imagenet_pretrained
.pth` that HRNet-Semantic-Segmentation and SegNode's HRNetV2 start from), timm's `hrnet_w*`
(the same weights, as .safetensors) and HRNet-Semantic-Segmentation's trained models
(`model.` before every name, and their segmentation head `last_layer`). `keras_weights`
turns such a state dict into kseg's weight paths (`hrnet_stage3_module2_branch1_block4_2_bn/
gamma`); `kseg.train.init_from` loads them by path and shape.

The ImageNet classification head (`incre_modules`, `downsamp_modules`, `final_layer`,
`classifier`) goes to an HRNet built with `head="classification"`; a segmentation network
has no counterpart and leaves it out, as HRNet-Semantic-Segmentation does. HRNet-OCR's
head (`conv3x3_ocr`, `aux_head`, `ocr_distri_head`, `cls_head`) goes to an HRNet built
with `ocr=True`.
"""

from __future__ import annotations

import re

import numpy as np

from kseg.models.torch_checkpoint import BATCH_NORM_VARIABLES, keras_kernel

# A ResNet block's own modules: conv1/bn1 ... and the projection of its identity.
_BLOCK = re.compile(r"(conv|bn)(\d)|downsample\.([01])")


def _conv_or_norm(index: str) -> str:
    """An `nn.Sequential(conv, bn, ...)`'s module index as kseg's layer suffix."""
    return {"0": "conv", "1": "bn"}[index]


def _block_layer(rest: str) -> str | None:
    """A block's module as kseg's suffix: `conv2` -> `2_conv`, `downsample.1` -> `down_bn`."""
    match = _BLOCK.fullmatch(rest)
    if match is None:
        return None
    if match.group(1):
        return f"{match.group(2)}_{match.group(1)}"
    return f"down_{_conv_or_norm(match.group(3))}"


def keras_layer(module: str) -> str | None:
    """kseg's layer name for HRNet's PyTorch module path `module` (the tensor name without
    `.weight`), or None for a module outside the backbone and the segmentation head."""
    try:
        return _keras_layer(module)
    except (KeyError, ValueError):  # an index that is no conv or norm, or no number
        return None


def _keras_layer(module: str) -> str | None:
    parts = module.split(".")
    head, rest = parts[0], parts[1:]
    if re.fullmatch(r"(conv|bn)[12]", head) and not rest:
        return f"hrnet_stem{head[-1]}_{head[:-1]}"
    if head == "layer1" and len(rest) >= 2:
        block = _block_layer(".".join(rest[1:]))
        return block and f"hrnet_layer1_block{int(rest[0]) + 1}_{block}"
    if re.fullmatch(r"transition[123]", head):
        if len(rest) == 2:  # a branch whose width changes: conv, bn
            return f"hrnet_{head}_{rest[0]}_{_conv_or_norm(rest[1])}"
        if len(rest) == 3:  # a new branch: stride-2 steps of conv, bn
            return f"hrnet_{head}_{rest[0]}_{int(rest[1]) + 1}_{_conv_or_norm(rest[2])}"
        return None
    if re.fullmatch(r"stage[234]", head) and len(rest) >= 4:
        module_name = f"hrnet_{head}_module{int(rest[0]) + 1}"
        if rest[1] == "branches" and len(rest) >= 5:
            block = _block_layer(".".join(rest[4:]))
            return block and f"{module_name}_branch{rest[2]}_block{int(rest[3]) + 1}_{block}"
        if rest[1] == "fuse_layers":
            i, j = int(rest[2]), int(rest[3])
            if j > i and len(rest) == 5:  # 1x1 conv, bn (then upsampling)
                return f"{module_name}_fuse{i}_{j}_{_conv_or_norm(rest[4])}"
            if j < i and len(rest) == 6:  # stride-2 steps of conv, bn
                return f"{module_name}_fuse{i}_{j}_{int(rest[4]) + 1}_{_conv_or_norm(rest[5])}"
        return None
    # HRNet-Semantic-Segmentation's head: conv (with a bias), bn, ReLU, classifier conv.
    if head == "last_layer" and rest in (["0"], ["1"], ["3"]):
        return {"0": "head_conv", "1": "head_bn", "3": "head_classifier"}[rest[0]]
    # The classification head: a bottleneck per branch, stride-2 conv-bn-ReLUs between
    # them and a final 1x1 conv-bn-ReLU (each conv with a bias), a linear classifier.
    if head == "incre_modules" and len(rest) >= 3 and rest[1] == "0":
        block = _block_layer(".".join(rest[2:]))
        return block and f"cls_incre{rest[0]}_{block}"
    if head == "downsamp_modules" and len(rest) == 2:
        return f"cls_down{int(rest[0]) + 1}_{_conv_or_norm(rest[1])}"
    if head == "final_layer" and len(rest) == 1:
        return f"cls_final_{_conv_or_norm(rest[0])}"
    if head == "classifier" and not rest:
        return "cls_classifier"
    return _ocr_layer(module)


# HRNet-OCR's head (HRNet-Semantic-Segmentation's seg_hrnet_ocr.py): its modules' kseg
# layers (`kseg.layers.ocr.ocr_head`) under `head_ocr_`.
_OCR = {
    "conv3x3_ocr.0": "pixel_conv",
    "conv3x3_ocr.1": "pixel_bn",
    "aux_head.0": "aux_conv",
    "aux_head.1": "aux_bn",
    "aux_head.3": "aux_classifier",
    "ocr_distri_head.conv_bn_dropout.0": "fuse_conv",
    "ocr_distri_head.conv_bn_dropout.1.0": "fuse_bn",
    "cls_head": "classifier",
}
# The object attention's conv, BNReLU pairs (`Sequential(conv, Sequential(bn, ReLU), ...)`).
_OCR_ATTENTION = {
    "f_pixel": ("query1", "query2"),
    "f_object": ("key1", "key2"),
    "f_down": ("value",),
    "f_up": ("up",),
}


def _ocr_layer(module: str) -> str | None:
    if module in _OCR:
        return f"head_ocr_{_OCR[module]}"
    match = re.fullmatch(r"ocr_distri_head\.object_context_block\.(\w+)\.(\d+)(\.0)?", module)
    if match is None or match.group(1) not in _OCR_ATTENTION:
        return None
    index, norm = int(match.group(2)), match.group(3) is not None
    if index % 2 != norm:  # a conv at an even index, its norm inside the odd one after
        return None
    layers = _OCR_ATTENTION[match.group(1)]
    return f"head_ocr_{layers[index // 2]}_{'bn' if norm else 'conv'}"


# Convs followed by batch norm whose PyTorch bias kseg folds into that norm (`keras_weights`).
_FOLDED_BIASES = (
    "head_conv",
    "cls_down",
    "cls_final_conv",
    "head_ocr_pixel_conv",
    "head_ocr_aux_conv",
)


def keras_weights(state: dict[str, np.ndarray]) -> tuple[dict[str, tuple[str, np.ndarray]], list]:
    """({kseg weight path: (the tensor's name in `state`, array)}, the names of `state`
    that have no kseg layer).

    Conv kernels go to Keras' layout (`keras_kernel`), the classifier's matrix is
    transposed. The bias of a conv that batch norm follows (the segmentation head's first
    conv, the classification head's, OCR's pixel and auxiliary convs), which kseg's conv
    lacks, is folded into that batch norm's moving mean: normalising conv + b with mean m
    is normalising conv with mean m - b."""
    weights, unused, biases = {}, [], {}
    for name, value in state.items():
        module, _, tensor = name.removeprefix("model.").rpartition(".")
        if tensor == "num_batches_tracked":
            continue
        layer = keras_layer(module)
        if layer is None:
            unused.append(name)
        elif layer.endswith("_bn"):
            weights[f"{layer}/{BATCH_NORM_VARIABLES[tensor]}"] = (name, value)
        elif tensor == "weight":
            kernel = value.T if value.ndim == 2 else keras_kernel(value)
            weights[f"{layer}/kernel"] = (name, kernel)
        elif layer.startswith(_FOLDED_BIASES):
            biases[layer.removesuffix("_conv") + "_bn/moving_mean"] = value
        else:
            weights[f"{layer}/bias"] = (name, value)
    for path, bias in biases.items():
        if path in weights:
            name, mean = weights[path]
            weights[path] = (name, mean - bias)
    return weights, unused
