"""Registry entries: U-Net and the three U-Nets of ChoiceNet's Table 4."""

from __future__ import annotations

from kseg.models.choicenet.choicenet_registry import CHOICENET_UNET_PRESET
from kseg.models.registry import register_model
from kseg.models.unet.unet import UNet
from kseg.train.presets import register_presets


@register_model("unet")
def unet(**kwargs) -> UNet:
    return UNet(**{"name": "unet", "block": "double_conv", **kwargs})


@register_model("res_unet")
def res_unet(**kwargs) -> UNet:
    return UNet(**{"name": "res_unet", "block": "residual", **kwargs})


@register_model("dense_unet")
def dense_unet(**kwargs) -> UNet:
    return UNet(**{"name": "dense_unet", "block": "dense", **kwargs})


@register_model("choicenet_unet")
def choicenet_unet(**kwargs) -> UNet:
    return UNet(**{"name": "choicenet_unet", "block": "choice", **kwargs})


register_presets(["unet", "res_unet", "dense_unet", "choicenet_unet"], CHOICENET_UNET_PRESET)
