"""Registry entries: HRNetV2-W48 and SegNode's Baseline, with and without OCR."""

from __future__ import annotations

from kseg.models.hrnet.hrnet import HRNetV2, ResidualHRNet
from kseg.models.registry import register_model


@register_model("hrnetv2_w48")
def hrnetv2_w48(**kwargs) -> HRNetV2:
    return HRNetV2(**{"width": 48, **kwargs})


@register_model("hrnetv2_w48_ocr")
def hrnetv2_w48_ocr(**kwargs) -> HRNetV2:
    return HRNetV2(**{"width": 48, "ocr": True, **kwargs})


@register_model("residual_hrnet")
def residual_hrnet(**kwargs) -> ResidualHRNet:
    return ResidualHRNet(**kwargs)
