"""ContextNet: real-time two-branch semantic segmentation (Poudel et al., BMVC 2018)."""

from __future__ import annotations

import keras

from kseg.layers import (
    Upsample,
    conv_norm_act,
    depthwise_norm_act,
    inverted_residual,
    pyramid_pooling,
    segmentation_head,
    separable_conv_norm_act,
)
from kseg.models.base import SegmentationModel, image_input
from kseg.models.contextnet.contextnet_presets import CONTEXTNET_VARIANTS

# Table 2: (expansion factor t, output channels c, repeats n, stride s) of the bottlenecks.
DEEP_BOTTLENECKS = (
    (1, 32, 1, 1),
    (6, 32, 1, 1),
    (6, 48, 3, 2),
    (6, 64, 3, 2),
    (6, 96, 2, 1),
    (6, 128, 2, 1),
)
DEEP_STEM = 32
DEEP_OUT = 128
SHALLOW = (32, 64, 128, 128)  # section 2.2.2: strides 2, 2, 2, 1
FUSION = 128
# MobileNetV2's activation, throughout; batch norm is Keras's default (TF-slim's).
ACT = "relu6"


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds a scaled channel count to a multiple of `divisor` (MobileNetV2's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _shallow_branch(x, width: float, name: str):
    """Full-detail branch: a standard conv and three depthwise-separable convs (section 2.2.2)."""
    c = [make_divisible(ch * width) for ch in SHALLOW]
    x = conv_norm_act(x, c[0], 3, strides=2, activation=ACT, name=f"{name}_conv1")
    x = separable_conv_norm_act(x, c[1], strides=2, activation=ACT, name=f"{name}_sep2")
    x = separable_conv_norm_act(x, c[2], strides=2, activation=ACT, name=f"{name}_sep3")
    return separable_conv_norm_act(x, c[3], strides=1, activation=ACT, name=f"{name}_sep4")


def _deep_branch(x, width: float, use_pyramid_pooling: bool, name: str):
    """Context branch of Table 2, with optional pyramid pooling before its last conv."""
    stem = make_divisible(DEEP_STEM * width)
    x = conv_norm_act(x, stem, 3, strides=2, activation=ACT, name=f"{name}_stem")
    block = 0
    for t, c, n, s in DEEP_BOTTLENECKS:
        for i in range(n):
            block += 1
            x = inverted_residual(
                x, make_divisible(c * width), t, s if i == 0 else 1, name=f"{name}_block{block}"
            )
    if use_pyramid_pooling:
        x = pyramid_pooling(x, merge="sum", name=f"{name}_ppm")
    return conv_norm_act(x, make_divisible(DEEP_OUT * width), 1, activation=ACT, name=f"{name}_out")


def _fusion_unit(high, low, up: int, channels: int, name: str):
    """Table 3: low branch upsampled, depthwise conv dilated by the same factor, 1x1 convs, add."""
    low = Upsample(up, name=f"{name}_up")(low)
    low = depthwise_norm_act(low, 3, dilation_rate=up, activation=ACT, name=f"{name}_low_dw")
    low = conv_norm_act(low, channels, 1, activation=None, name=f"{name}_low_pw")
    high = conv_norm_act(high, channels, 1, activation=None, name=f"{name}_high_pw")
    x = keras.layers.Add(name=f"{name}_add")([high, low])
    return keras.layers.Activation(ACT, name=f"{name}_act")(x)


@keras.saving.register_keras_serializable(package="kseg")
class ContextNet(SegmentationModel):
    """ContextNet (Poudel et al., "ContextNet: Exploring Context and Detail for Semantic
    Segmentation in Real-time", BMVC 2018).

    A deep branch of MobileNetV2 bottlenecks (Table 2) sees the image downscaled by
    `deep_factor` (4 for cn14) and captures context; a shallow branch of one conv and three
    depthwise-separable convs sees the full image and keeps detail. The fusion unit of
    Table 3 adds them at 1/8 of the input resolution and a 1x1 classifier follows. ReLU6 and
    batch norm throughout; dropout before the classifier only.

    Choices where the paper is open, and why:
    - Input downscaling is average pooling by the integer factor (area interpolation).
    - The final Conv2d of Table 2 is 1x1: with it the count for 19 classes is Table 4's
      0.85M (a 3x3 kernel would add 0.13M).
    - Pyramid pooling (section 2.2.3 found it helps) is ICNet's parameter-free form, which
      the authors reimplemented for their comparison: the map average-pooled to 1/2/3/6
      bins, resized back and summed to it, before that final conv. PSPNet's form (1x1
      convs and concatenation) would add 33K parameters, 4.6% over Table 4's count.
      `pyramid_pooling=False` removes it.
    - The fusion unit's depthwise dilation equals its upsampling factor (4 in Table 3) and
      ReLU6 follows the addition. cn124 fuses in cascade: deep with the half-resolution
      branch, then that with the full-resolution branch.
    - Dropout rate 0.1 (the paper gives none; pytorchcv's ContextNet uses 0.1).
    - The auxiliary head (section 2.2.3, loss weight 0.4 in the recipe) is dropout and a
      1x1 classifier on the deep branch's output, upsampled to the input size.

    Parameters are counted as trainable weights (batch-norm moving statistics excluded)
    without the auxiliary head, which is dropped at inference: cn14 has 0.86M for 19
    classes against Table 4's 0.85M.

    Args:
        num_classes: number of output classes (19 for Cityscapes).
        variant: one of `CONTEXTNET_VARIANTS`: "cn14", "cn12", "cn18", "cn124",
            "cn14_500", "cn14_160" (a "-" may stand for "_").
        width_multiplier: scales every layer's channels (rounded to multiples of 8);
            None takes the variant's width (1.0, 0.72 for cn14_500, 0.39 for cn14_160).
            Progressive pruning starts from 2.0 (section 3.2.2).
        aux_head: also return the deep branch's logits; outputs become a dict
            `{"logits": ..., "aux_logits": ...}`.
        pyramid_pooling: pyramid pooling after the deep branch.
        dropout: dropout rate before the classifier(s).
        branches: "both" (ContextNet), or one branch alone with the classifier on its
            output: "deep" (the context branch) or "shallow" (the detail branch), the
            single-branch networks of the branch analysis (section 4, Fig. 2).
        zero_branch: "deep" or "shallow": that branch's output is multiplied by zero
            before the fusion, as section 4 zeroes a trained ContextNet's branch to see
            what the other contributes (Fig. 2); `evaluate --zero-branch` scores it.
        image_shape: (height, width, channels); height and width may be None and must
            otherwise be multiples of `8 * deep_factor` (32 for cn14, 64 for cn18).

    Example:
        >>> model = kseg.models.ContextNet(num_classes=19, variant="cn14", aux_head=False)
        >>> model(np.zeros((1, 1024, 2048, 3), "float32")).shape
        TensorShape([1, 1024, 2048, 19])
    """

    def __init__(
        self,
        num_classes: int = 19,
        variant: str = "cn14",
        width_multiplier: float | None = None,
        aux_head: bool = True,
        pyramid_pooling: bool = True,
        dropout: float = 0.1,
        branches: str = "both",
        zero_branch: str | None = None,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        key = variant.replace("-", "_").lower()
        if key not in CONTEXTNET_VARIANTS:
            raise ValueError(
                f"unknown ContextNet variant {variant!r}; choose one of "
                f"{', '.join(CONTEXTNET_VARIANTS)}"
            )
        spec = CONTEXTNET_VARIANTS[key]
        width = spec["width_multiplier"] if width_multiplier is None else width_multiplier
        if not width > 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if branches not in ("both", "deep", "shallow"):
            raise ValueError(f"branches must be 'both', 'deep' or 'shallow', got {branches!r}")
        if zero_branch not in (None, "deep", "shallow") or (zero_branch and branches != "both"):
            raise ValueError(
                f"zero_branch must be None, 'deep' or 'shallow' (with both branches), got "
                f"{zero_branch!r} with branches={branches!r}"
            )
        deep_factor, shallow_factors = spec["deep_factor"], spec["shallow_factors"]
        multiple = 8 * deep_factor

        # === Functional Model ===
        name, inputs = image_input(kwargs, f"contextnet_{key}", num_classes, image_shape, multiple)

        def zeroed(x, branch):  # section 4's branch analysis (Fig. 2)
            return (
                keras.layers.Rescaling(0.0, name=f"zero_{branch}")(x)
                if (zero_branch == branch)
                else x
            )

        deep = x = None
        if branches != "shallow":
            deep_in = keras.layers.AveragePooling2D(deep_factor, name="deep_downscale")(inputs)
            deep = _deep_branch(deep_in, width, pyramid_pooling, name="deep")
            x, x_factor = zeroed(deep, "deep"), deep_factor
        fusion_channels = make_divisible(FUSION * width)
        for f in sorted(shallow_factors, reverse=True) if branches != "deep" else ():
            s_in = inputs
            if f > 1:
                s_in = keras.layers.AveragePooling2D(f, name=f"shallow{f}_downscale")(inputs)
            shallow = zeroed(_shallow_branch(s_in, width, name=f"shallow{f}"), "shallow")
            if x is None:  # the shallow branch alone
                x, x_factor = shallow, f
                continue
            x = _fusion_unit(shallow, x, x_factor // f, fusion_channels, name=f"fusion{f}")
            x_factor = f
        logits = segmentation_head(x, num_classes, dropout, upsample=8 * x_factor, name="head")
        outputs = logits
        if aux_head and branches == "both":
            aux = segmentation_head(deep, num_classes, dropout, upsample=multiple, name="aux")
            outputs = {"logits": logits, "aux_logits": aux}
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.input_multiple = multiple
        self._store_config(locals())
