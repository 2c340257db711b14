"""Registry entries of DeepLabV3+ and the cross cooperative network (paper 003)."""

from __future__ import annotations

from kseg.models.deeplab.cooperative import CrossCooperative
from kseg.models.deeplab.deeplab import DeepLabV3Plus
from kseg.models.registry import register_model


@register_model("deeplabv3plus_resnet101")
def deeplabv3plus_resnet101(**kwargs) -> DeepLabV3Plus:
    """DeepLabV3+ on ResNet-101 (Table 1 and 3's single network, "Backbone: Resnet")."""
    return DeepLabV3Plus(backbone="resnet101", **kwargs)


@register_model("deeplabv3plus_xception65")
def deeplabv3plus_xception65(**kwargs) -> DeepLabV3Plus:
    """DeepLabV3+ on DeepLab's aligned Xception-65 ("Backbone: XCeption")."""
    return DeepLabV3Plus(backbone="xception65", **kwargs)


@register_model("cross_cooperative")
def cross_cooperative(**kwargs) -> CrossCooperative:
    """Xception-65 (top) and ResNet-101 (bottom) DeepLabV3+ networks with cross
    connections (the "ours" rows of Table 1, 3 and 5)."""
    return CrossCooperative(**kwargs)
