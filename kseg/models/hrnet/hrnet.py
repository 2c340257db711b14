"""HRNetV2 for segmentation and its residual form, SegNode's Baseline network, each with
HRNet's segmentation head or its ImageNet classification head (`head`)."""

from __future__ import annotations

import keras
import numpy as np

from kseg.layers.conv import conv_norm_act, stride_padding
from kseg.layers.hrnet import (
    bottleneck_block,
    concat_branches,
    hr_layer1,
    hr_module,
    hr_stem,
    hr_transition,
)
from kseg.layers.norm import TORCH_BATCH_NORM
from kseg.layers.ocr import ocr_head
from kseg.layers.resize import Upsample
from kseg.models.base import SegmentationModel, image_input
from kseg.models.hrnet.hrnet_torch import keras_weights

INPUT_MULTIPLE = 32  # the lowest branch is at 1/32 of the image
# By `convention`, an HRNet pads its stride-2 convs as Keras' "same" and takes the [0, 1]
# image as it is ("keras"), or computes as HRNet's PyTorch code ("pytorch": every side
# padded, the image normalised by ImageNet's mean and standard deviation, torchvision's),
# under which HRNet's published weights (`hrnet_torch`) give the features they gave there.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCH_ARGUMENTS = {"convention": "pytorch"}
# What an HRNet's branches feed: HRNetV2's segmentation head (or OCR's), or the head HRNet
# is pre-trained with on ImageNet (`classification_head`), whose backbone then initialises
# the segmentation network (`python -m kseg.recipes.imagenet`).
HEADS = ("segmentation", "classification")
# The classification head's bottleneck widths per branch (x 4: 128, 256, 512, 1024
# channels out, for every HRNet width) and its last features.
CLASSIFIER_PLANES = (32, 64, 128, 256)
CLASSIFIER_FEATURES = 2048


def branch_channels(width: int) -> list[int]:
    """Widths of the four branches: W, 2W, 4W, 8W (48, 96, 192, 384 for W48)."""
    return [width * 2**i for i in range(4)]


def fusion_interpolation(convention: str, head: str, align_corners: bool = False) -> str:
    """How an HRNet's fusions upsample: bilinearly (HRNet's segmentation code, and kseg's
    every HRNet), with `align_corners` as HRNet-Semantic-Segmentation's later code does, but
    by the nearest neighbour as PyTorch computes HRNet's ImageNet classifier (convention
    "pytorch" with the classification head), so that its published weights score there as
    HRNet-Image-Classification's code scores them."""
    if convention == "pytorch" and head == "classification":
        return "nearest"
    return "bilinear_align_corners" if align_corners else "bilinear"


def imagenet_normalize(x, name: str):
    """The [0, 1] image normalised by ImageNet's mean and standard deviation, as HRNet's
    PyTorch code takes it (torchvision's normalisation)."""
    std = np.asarray(IMAGENET_STD, "float32")
    scale, offset = 1 / std, -np.asarray(IMAGENET_MEAN, "float32") / std
    return keras.layers.Rescaling(scale.tolist(), offset=offset.tolist(), name=name)(x)


def hrnet_front(
    x,
    width: int,
    stage_modules=(1, 4),
    blocks: int = 4,
    convention: str = "keras",
    interpolation: str = "bilinear",
    name: str = "hrnet",
):
    """HRNetV2 up to its fourth stage: stem, stage 1, stages 2 and 3 with their transitions,
    and the transition to four branches. Returns the four branch tensors.

    `convention` (`kseg.layers.conv.CONVENTIONS`): "pytorch" normalises the image first
    (`{name}_normalize`) and pads the stride-2 convs on every side. `interpolation`: the
    fusions' upsampling (`fusion_interpolation`)."""
    padding = stride_padding(convention)
    if convention == "pytorch":
        x = imagenet_normalize(x, name=f"{name}_normalize")
    channels = branch_channels(width)
    x = hr_stem(x, padding=padding, name=f"{name}_stem")
    x = hr_layer1(x, name=f"{name}_layer1")
    xs = [x]
    for stage, modules in enumerate(stage_modules, start=2):
        xs = hr_transition(
            xs, channels[:stage], padding=padding, name=f"{name}_transition{stage - 1}_"
        )
        for m in range(modules):
            module = f"{name}_stage{stage}_module{m + 1}"
            xs = hr_module(xs, blocks, padding=padding, interpolation=interpolation, name=module)
    return hr_transition(xs, channels, padding=padding, name=f"{name}_transition3_")


def hrnet_head(xs, num_classes: int, ocr: bool, interpolation: str = "bilinear", name="head"):
    """HRNetV2's head (concatenate the upsampled branches, 1x1 conv-BN-ReLU, 1x1 to classes)
    or, with `ocr`, the object-contextual head; logits at 1/4, upsampled to the image (each
    upsampling by `interpolation`). Returns the logits, or with OCR `{"logits",
    "aux_logits"}`."""
    x = concat_branches(xs, interpolation, name=f"{name}_concat")
    if ocr:
        logits, aux = ocr_head(x, num_classes, name=f"{name}_ocr")
        return {
            "logits": upsample_logits(logits, f"{name}_logits", interpolation),
            "aux_logits": upsample_logits(aux, f"{name}_aux_logits", interpolation),
        }
    # seg_hrnet gives this conv a bias; before batch norm it has no effect (zero gradient).
    x = conv_norm_act(x, x.shape[-1], 1, norm=TORCH_BATCH_NORM, name=name)
    x = keras.layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)
    return upsample_logits(x, f"{name}_logits", interpolation)


def classification_head(xs, num_classes: int, padding: str = "same", name: str = "cls"):
    """HRNet's ImageNet classification head (Wang et al. 2019; HRNet-Image-
    Classification's `incre_modules`, `downsamp_modules`, `final_layer`, `classifier`):
    each branch through a bottleneck to 128, 256, 512 and 1024 channels; from the
    highest resolution down, the running features through a stride-2 3x3 conv-BN-ReLU
    added to the next branch's; a 1x1 conv-BN-ReLU to 2048 channels, global average
    pooling and a dense layer to class logits (float32 under mixed precision)."""
    y = None
    for i, (x, planes) in enumerate(zip(xs, CLASSIFIER_PLANES, strict=True)):
        x = bottleneck_block(x, planes, name=f"{name}_incre{i}")
        if y is None:
            y = x
            continue
        y = conv_norm_act(
            y, x.shape[-1], 3, 2, norm=TORCH_BATCH_NORM, padding=padding, name=f"{name}_down{i}"
        )
        y = keras.layers.Add(name=f"{name}_sum{i}")([x, y])
    y = conv_norm_act(y, CLASSIFIER_FEATURES, 1, norm=TORCH_BATCH_NORM, name=f"{name}_final")
    y = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(y)
    y = keras.layers.Dense(num_classes, name=f"{name}_classifier")(y)
    return keras.layers.Activation("linear", dtype="float32", name=f"{name}_logits")(y)


def hrnet_outputs(xs, num_classes: int, ocr: bool, head: str, padding: str, interpolation: str):
    """The model's outputs on the four branches `xs`: `head`'s (one of `HEADS`); the
    segmentation head upsamples by `interpolation` (its fusions')."""
    if head == "classification":
        return classification_head(xs, num_classes, padding)
    return hrnet_head(xs, num_classes, ocr, interpolation)


def upsample_logits(x, name: str, interpolation: str = "bilinear"):
    """Logits at 1/4 to the image size (by `interpolation`, bilinear by default), float32
    under mixed precision."""
    x = Upsample(4, interpolation, name=f"{name}_upsample")(x)
    return keras.layers.Activation("linear", dtype="float32", name=name)(x)


def check_head(head: str, ocr: bool) -> str:
    """`head` checked against `HEADS` and `ocr`; the model name's suffix for it."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if ocr and head == "classification":
        raise ValueError("ocr is a segmentation head: give ocr=False with head='classification'")
    return "_cls" if head == "classification" else "_ocr" if ocr else ""


def _hrnet_input(kwargs: dict, prefix: str, num_classes, width, ocr: bool, head: str, image_shape):
    """`image_input` for the HRNets, after checking `width` and `head`, which their names
    carry."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int (48 for HRNetV2-W48), got {width!r}")
    name = f"{prefix}_w{width}{check_head(head, ocr)}"
    return image_input(kwargs, name, num_classes, image_shape, INPUT_MULTIPLE)


class _HRNet(SegmentationModel):
    """What the HRNets share: their PyTorch weights' names (`hrnet_torch`) and the
    arguments that build them as PyTorch computes them."""

    @staticmethod
    def torch_arguments(names) -> dict:
        """The arguments that build the HRNet as PyTorch computed the checkpoint whose
        tensors are `names`: its padding and input normalisation, and for HRNet-OCR's the
        upsampling with aligned corners that all of its models trained with
        (HRNet-Semantic-Segmentation's `MODEL.ALIGN_CORNERS`; its plain HRNetV2 models
        trained with either, so theirs is the user's to give)."""
        ocr = any("ocr_distri_head." in name for name in names)
        return {**TORCH_ARGUMENTS, "align_corners": True} if ocr else dict(TORCH_ARGUMENTS)

    @staticmethod
    def torch_weights(state: dict) -> tuple[dict, list[str]]:
        """HRNet's PyTorch state dict as ({kseg weight path: (name, array)}, the names
        outside the backbone and the segmentation head): `hrnet_torch.keras_weights`."""
        return keras_weights(state)


@keras.saving.register_keras_serializable(package="kseg")
class HRNetV2(_HRNet):
    """HRNetV2 for semantic segmentation (Wang et al. 2019), the first row of SegNode's
    Table 1 and Table 2 (65.8M parameters for W48).

    Stem of two stride-2 3x3 convs; stage 1 of four bottlenecks; stages 2-4 with 2, 3 and
    4 branches of `width * 2**i` channels (1, 4 and 3 modules of four basic blocks per
    branch) and multi-resolution fusion after every module; all branches upsampled to 1/4
    and concatenated; 1x1 conv-BN-ReLU and 1x1 conv to classes; bilinear to the input size.
    As `HRNet/HRNet-Semantic-Segmentation` (seg_hrnet.py, w48 config: 65.86M parameters
    for 19 classes), except that the head's first conv has no bias (batch norm follows it)
    and, unless `convention="pytorch"`, Keras's "same" padding of stride-2 convs pads
    bottom/right where PyTorch pads both sides.

    Args:
        num_classes: number of classes.
        width: channels of the highest-resolution branch (48 for W48, 18 for W18; tests
            use 4).
        ocr: replace the head with the object-contextual representation head (Yuan et al.
            2020, HRNetV2+OCR of Table 1); outputs become `{"logits", "aux_logits"}`.
        head: "segmentation", or "classification": HRNet's ImageNet head
            (`classification_head`, 1000 classes for HRNet-Image-Classification's
            weights), class logits (N, classes) of the image; what
            `python -m kseg.recipes.imagenet` pre-trains.
        stage_modules: modules in stages 2, 3 and 4 (HRNetV2: 1, 4, 3).
        blocks: basic blocks per branch in every module (HRNetV2: 4).
        convention: "keras" (Keras' "same" padding of stride-2 convs, the [0, 1] image as
            it is) or "pytorch": as HRNet's PyTorch code computes (every side padded, the
            image normalised by ImageNet's mean and standard deviation; with the
            classification head, fusions upsampled by the nearest neighbour as its
            classification code does), under which HRNet's published weights
            (`kseg.train.init_from`) give PyTorch's features.
        align_corners: upsample bilinearly with the corner pixels aligned (PyTorch's
            `align_corners=True`) in the fusions and the segmentation head, as
            HRNet-Semantic-Segmentation's later code (its PyTorch 1.1 models and HRNet-OCR,
            `MODEL.ALIGN_CORNERS`) trained; default half-pixel centres, as its first code.
        image_shape: (height, width, channels); height and width multiples of 32 or None.

    Example:
        >>> model = HRNetV2(num_classes=19, width=48)
        >>> model(np.zeros((1, 512, 1024, 3), "float32")).shape
        TensorShape([1, 512, 1024, 19])
    """

    # What a run that starts from scratch is told (`Runner.train_stage`).
    pretraining = (
        "HRNetV2's published results start from HRNet's ImageNet weights: --init-from "
        "hrnetv2_w48_imagenet_pretrained.pth (HRNet-Image-Classification's) or timm's "
        "hrnet_w48 .safetensors"
    )

    def __init__(
        self,
        num_classes: int = 19,
        width: int = 48,
        ocr: bool = False,
        head: str = "segmentation",
        stage_modules: tuple[int, int, int] = (1, 4, 3),
        blocks: int = 4,
        convention: str = "keras",
        align_corners: bool = False,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        stage_modules = tuple(int(m) for m in stage_modules)

        # === Functional Model ===
        name, inputs = _hrnet_input(kwargs, "hrnetv2", num_classes, width, ocr, head, image_shape)
        upsample = fusion_interpolation(convention, head, align_corners)
        xs = hrnet_front(inputs, width, stage_modules[:2], blocks, convention, upsample)
        padding = stride_padding(convention)
        for m in range(stage_modules[2]):
            module = f"hrnet_stage4_module{m + 1}"
            xs = hr_module(xs, blocks, padding=padding, interpolation=upsample, name=module)
        outputs = hrnet_outputs(xs, num_classes, ocr, head, padding, upsample)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.input_multiple = INPUT_MULTIPLE
        self.task = head  # HEADS are the task names
        self._store_config(locals())


@keras.saving.register_keras_serializable(package="kseg")
class ResidualHRNet(_HRNet):
    """SegNode's Baseline network (Khoshsirat & Kambhamettu, section 3.1, Fig. 2): HRNetV2
    whose fourth stage is its four-branch module repeated `modules` times (six), each
    repetition a residual unit, h <- h + module(h), with the skip at module level.

    The module is the residual form of `kseg.layers.hrnet.hr_module`: on every branch
    `blocks` pre-activation basic blocks, each two BN-ReLU-conv units (Fig. 2's "small
    blocks"), then HRNet's fusion without a final ReLU. Two blocks per branch is what
    Table 2's 70.9M parameters fix: HRNetV2-W48's own stage-4 module (four blocks, 15.9M)
    six times would give 113M, two blocks (8.8M) give 71.1M. Stages 1-3 and the head are
    HRNetV2's; a BN-ReLU on each branch closes the pre-activation chain before the head.

    Args:
        num_classes, width, ocr, head, image_shape: as `HRNetV2`.
        modules: residual module repetitions (the paper: six).
        blocks: pre-activation basic blocks per branch in each module (two, see above).
        stage_modules, front_blocks: modules in HRNetV2's stages 2 and 3 (1, 4) and basic
            blocks per branch in them (4), as `HRNetV2`.
        convention: as `HRNetV2`.
    """

    pretraining = (
        "SegNode's Baseline was pre-trained on ImageNet (Khoshsirat & Kambhamettu, section "
        "4.1): `python -m kseg.recipes.imagenet train --model residual_hrnet` pre-trains it, "
        "and --init-from that run's best.keras starts from it (--init-from "
        "hrnetv2_w48_imagenet_pretrained.pth gives its stages 1-3 HRNet's ImageNet weights)"
    )

    def __init__(
        self,
        num_classes: int = 19,
        width: int = 48,
        modules: int = 6,
        blocks: int = 2,
        ocr: bool = False,
        head: str = "segmentation",
        stage_modules: tuple[int, int] = (1, 4),
        front_blocks: int = 4,
        convention: str = "keras",
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        stage_modules = tuple(int(m) for m in stage_modules)

        # === Functional Model ===
        name, inputs = _hrnet_input(
            kwargs, "residual_hrnet", num_classes, width, ocr, head, image_shape
        )
        upsample = fusion_interpolation(convention, head)
        xs = hrnet_front(inputs, width, stage_modules, front_blocks, convention, upsample)
        padding = stride_padding(convention)
        for m in range(modules):
            updates = hr_module(
                xs, blocks, preact=True, padding=padding, interpolation=upsample,
                name=f"residual{m + 1}",
            )  # fmt: skip
            xs = [
                keras.layers.Add(name=f"residual{m + 1}_skip{i}")([x, u])
                for i, (x, u) in enumerate(zip(xs, updates, strict=True))
            ]
        xs = [
            keras.layers.ReLU(name=f"residual_out{i}_relu")(
                TORCH_BATCH_NORM.layer(x.shape[-1], f"residual_out{i}_bn")(x)
            )
            for i, x in enumerate(xs)
        ]
        outputs = hrnet_outputs(xs, num_classes, ocr, head, padding, upsample)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.input_multiple = INPUT_MULTIPLE
        self.task = head  # HEADS are the task names
        self._store_config(locals())
