"""DeepLabV3+ (Chen et al. 2018) on a ResNet-101 or aligned Xception-65 built in kseg."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kseg.layers.conv import stride_padding
from kseg.models.backbones import build_backbone, load_backbone_weights, loaded_backbone
from kseg.models.base import SegmentationModel, image_input
from kseg.models.deeplab.head import deeplabv3plus_head


def check_head_args(output_stride, rates) -> tuple[int, ...]:
    """Validates the output stride; returns the ASPP rates (None: DeepLab's
    6, 12, 18 at output stride 16, doubled at 8)."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16 (DeepLabV3+), got {output_stride!r}")
    if rates is None:
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
    return tuple(int(r) for r in rates)


@keras.saving.register_keras_serializable(package="kseg")
class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution for
    Semantic Image Segmentation", ECCV 2018), the single networks of Ikedo & Hotta 2022's Tables 1
    and 3.

    The backbone's last features (output stride 16: the last stage dilated instead of
    strided) go through ASPP; the decoder joins them with the backbone's stride-4
    features (see `kseg.models.deeplab.head`). Any image size works: the decoder and the
    logits are resized to the size of the tensors they join.

    Args:
        num_classes: output classes (21 for PASCAL VOC, 19 for Cityscapes).
        backbone: "resnet101" (`kseg.models.backbones.resnet`) or "xception65"
            (`kseg.models.backbones.xception`).
        backbone_depth: None for the paper's depth; for tests, the ResNet's four stage
            block counts or the number of Xception middle-flow modules.
        backbone_width: multiplies the backbone's channels (1.0: the paper's).
        head_channels: ASPP and decoder channels (256 in DeepLabV3+).
        output_stride: 16 (Ikedo & Hotta 2022 and DeepLabV3+ training) or 8.
        aspp_rates: the dilated ASPP branches' rates; None: 6, 12, 18 (24, 36 at 8).
        backbone_weights: ImageNet weights of the backbone, loaded once at construction
            and not part of the config (a saved model carries its own weights). For
            ResNet-101 keras.applications' no-top weights file, or "imagenet" (that file
            from the Keras cache, downloaded if missing); for Xception-65 timm's
            `xception65` checkpoint (.pth or .safetensors: DeepLab's ImageNet weights),
            with `convention="pytorch"`.
        convention: how the Xception pads its strided convs: "keras" (Keras' "same", the
            odd row and column at the bottom and right) or "pytorch" (every side, as
            DeepLab's TensorFlow code and timm's port of its weights). ResNet-101 is the
            same under both.
        image_shape: (height, width, channels); height and width may be None.

    Example:
        >>> model = kseg.models.DeepLabV3Plus(num_classes=21, backbone="resnet101")
        >>> model(np.zeros((1, 513, 513, 3), "float32")).shape
        TensorShape([1, 513, 513, 21])
    """

    config_excludes = frozenset({"backbone_weights"})
    # What a run that starts from scratch is told (`Runner.train_stage`).
    pretraining = (
        "Ikedo & Hotta start the backbones from ImageNet weights: --model-kwargs "
        '\'{"backbone_weights": "imagenet"}\' for ResNet-101 (keras.applications\'), '
        '\'{"backbone_weights": "xception65.safetensors", "convention": "pytorch"}\' '
        "for Xception-65 (DeepLab's, timm's xception65 file)"
    )

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet101",
        backbone_depth: int | Sequence[int] | None = None,
        backbone_width: float = 1.0,
        head_channels: int = 256,
        output_stride: int = 16,
        aspp_rates: Sequence[int] | None = None,
        backbone_weights: str | None = None,
        convention: str = "keras",
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        rates = check_head_args(output_stride, aspp_rates)
        padding = stride_padding(convention)
        # === Functional Model ===
        name, inputs = image_input(kwargs, f"deeplabv3plus_{backbone}", num_classes, image_shape)
        high, low = build_backbone(
            backbone, inputs, backbone_depth, backbone_width, output_stride, "", padding
        )
        (logits,) = deeplabv3plus_head(
            inputs, [high], [low], num_classes, channels=head_channels, rates=rates
        )
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        # What the run prints of the weights loaded here (`Runner.train_stage`).
        self.backbone_report: list[str] = []
        if backbone_weights is not None:
            count = load_backbone_weights(self, backbone, backbone_weights)
            self.backbone_report.append(loaded_backbone(backbone, backbone_weights, count))

        # === Config ===
        backbone_depth = None if backbone_depth is None else _listify(backbone_depth)
        aspp_rates = None if aspp_rates is None else rates
        self._store_config(locals())


def _listify(depth):
    return int(depth) if isinstance(depth, int) else [int(d) for d in depth]
