"""Cross cooperative learning (Ikedo & Hotta, VISAPP 2022): two DeepLabV3+
networks on different backbones that exchange feature maps."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kseg.layers.conv import stride_padding
from kseg.models.backbones import build_backbone, load_backbone_weights, loaded_backbone
from kseg.models.base import SegmentationModel, image_input
from kseg.models.deeplab.deeplab import _listify, check_head_args
from kseg.models.deeplab.head import deeplabv3plus_head

PATHS = ("cross", "one_way", "none")
PREDICTIONS = ("mean", "top", "bottom")
STREAMS = ("top_", "bottom_")


def cooperative_mix(paths: str, connection1: bool = True, connection2: bool = True):
    """The `mix` of `deeplabv3plus_head` for two networks [top, bottom].

    At every point of `kseg.models.deeplab.head.MIX_POINTS` a receiving network
    concatenates the sender's map after its own (channels: own, then the other's), so
    the layer that consumes it sees both. "cross" sends both ways, "one_way" only top to
    bottom (the conventional cooperative network of Fig. 1), "none" nowhere. The
    `connection1` / `connection2` switches drop the exchanges at the backbone and ASPP
    outputs (the ablation of Table 5).
    """
    if paths not in PATHS:
        raise ValueError(f"paths must be one of {PATHS}, got {paths!r}")
    off = {p for p, on in (("connection1", connection1), ("connection2", connection2)) if not on}

    def mix(tensors: list, point: str) -> list:
        if paths == "none" or point in off:
            return tensors
        top, bottom = tensors
        to_bottom = keras.layers.Concatenate(name=f"bottom_{point}_from_top")([bottom, top])
        if paths == "one_way":
            return [top, to_bottom]
        to_top = keras.layers.Concatenate(name=f"top_{point}_from_bottom")([top, bottom])
        return [to_top, to_bottom]

    return mix


@keras.saving.register_keras_serializable(package="kseg")
class CrossCooperative(SegmentationModel):
    """Cross cooperative network (Ikedo & Hotta, "Fusion of Different Features by Cross
    Cooperative Learning for Semantic Segmentation", VISAPP 2022).

    Two DeepLabV3+ networks see the same image: the top one on an aligned Xception-65,
    the bottom one on a ResNet-101 (section 3.2). Cross connections pass each network's
    feature maps to the other after every ASPP branch and every decoder layer, and after
    the backbone output (Connection 1) and the ASPP output (Connection 2) (section 3.3,
    Fig. 2 and 4); the receiving layer takes its own map and the other's concatenated
    (`cooperative_mix`). The paper does not say how a received map is merged; kseg
    concatenates, which keeps both maps whole and lets the receiving layer weigh them.

    Outputs `{"logits", "top_logits", "bottom_logits"}`: both networks' logits and the
    prediction, `prediction` = "mean" (their average, the ensemble of Fig. 5 when
    `paths="none"`), "top" or "bottom". Training minimises CE(top) + CE(bottom)
    (equation 1): the `cross_cooperative` presets weight "logits" 0 and the other two 1.

    Args:
        num_classes: output classes.
        top, bottom: backbone names ("xception65", "resnet101").
        top_depth, bottom_depth: None for the paper's depth; else as
            `DeepLabV3Plus.backbone_depth`.
        backbone_width, head_channels, output_stride, aspp_rates: as `DeepLabV3Plus`,
            shared by both networks.
        paths: "cross" (the proposed method), "one_way" (top to bottom only, the
            conventional cooperative network) or "none" (two independent networks trained
            together, Table 1's "w/o all path").
        connection1, connection2: the extra cross connections after the backbones and
            after the ASPPs (Table 5's ablation).
        prediction: what "logits" holds: "mean", "top" or "bottom".
        backbone_weights: (top, bottom) pretrained weights, each as
            `DeepLabV3Plus.backbone_weights`. Not part of the config.
        convention: as `DeepLabV3Plus`.
        image_shape: (height, width, channels).

    Example:
        >>> model = kseg.models.CrossCooperative(num_classes=21)
        >>> sorted(model(np.zeros((1, 513, 513, 3), "float32")))
        ['bottom_logits', 'logits', 'top_logits']
    """

    config_excludes = frozenset({"backbone_weights"})
    # What a run that starts from scratch is told (`Runner.train_stage`).
    pretraining = (
        "Ikedo & Hotta start both backbones from ImageNet weights: --model-kwargs "
        '\'{"backbone_weights": ["xception65.safetensors", "imagenet"], '
        '"convention": "pytorch"}\' (Xception-65: DeepLab\'s, timm\'s xception65 file; '
        "ResNet-101: keras.applications')"
    )

    def __init__(
        self,
        num_classes: int = 21,
        top: str = "xception65",
        bottom: str = "resnet101",
        top_depth: int | Sequence[int] | None = None,
        bottom_depth: int | Sequence[int] | None = None,
        backbone_width: float = 1.0,
        head_channels: int = 256,
        output_stride: int = 16,
        aspp_rates: Sequence[int] | None = None,
        paths: str = "cross",
        connection1: bool = True,
        connection2: bool = True,
        prediction: str = "mean",
        backbone_weights: tuple[str | None, str | None] = (None, None),
        convention: str = "keras",
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        rates = check_head_args(output_stride, aspp_rates)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        mix = cooperative_mix(paths, connection1, connection2)
        padding = stride_padding(convention)
        # === Functional Model ===
        name, inputs = image_input(kwargs, "cross_cooperative", num_classes, image_shape)
        features = [
            build_backbone(b, inputs, d, backbone_width, output_stride, p, padding)
            for b, d, p in ((top, top_depth, STREAMS[0]), (bottom, bottom_depth, STREAMS[1]))
        ]
        top_logits, bottom_logits = deeplabv3plus_head(
            inputs,
            [f[0] for f in features],
            [f[1] for f in features],
            num_classes,
            prefixes=STREAMS,
            mix=mix,
            channels=head_channels,
            rates=rates,
        )
        if prediction == "mean":
            # float32, as the logits it averages, under mixed precision too
            logits = keras.layers.Average(dtype="float32", name="mean_logits")(
                [top_logits, bottom_logits]
            )
        else:
            chosen = top_logits if prediction == "top" else bottom_logits
            logits = keras.layers.Identity(dtype="float32", name="prediction")(chosen)
        outputs = {"logits": logits, "top_logits": top_logits, "bottom_logits": bottom_logits}
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.backbone_report: list[str] = []  # as `DeepLabV3Plus.backbone_report`
        for b, w, p in zip((top, bottom), backbone_weights, STREAMS, strict=True):
            if w is not None:
                count = load_backbone_weights(self, b, w, prefix=p)
                self.backbone_report.append(loaded_backbone(b, w, count, prefix=p))

        # === Config ===
        top_depth = None if top_depth is None else _listify(top_depth)
        bottom_depth = None if bottom_depth is None else _listify(bottom_depth)
        aspp_rates = None if aspp_rates is None else rates
        self._store_config(locals())
