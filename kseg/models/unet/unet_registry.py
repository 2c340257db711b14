"""Registry entries: U-Net and the three U-Nets of ChoiceNet's Table 4."""

from __future__ import annotations

from kseg.models.choicenet.choicenet_registry import CHOICENET_UNET_PRESET
from kseg.models.registry import register_model
from kseg.models.unet.unet import UNet
from kseg.train.presets import register_presets

for _block, _name in (
    ("double_conv", "unet"),
    ("residual", "res_unet"),
    ("dense", "dense_unet"),
    ("choice", "choicenet_unet"),
):
    register_model(_name, UNet, name=_name, block=_block)

register_presets(["unet", "res_unet", "dense_unet", "choicenet_unet"], CHOICENET_UNET_PRESET)
