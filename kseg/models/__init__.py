"""kseg's models, by class and by registry name."""

from kseg.models.choicenet import ChoiceNet
from kseg.models.contextnet import ContextNet
from kseg.models.deeplab import CrossCooperative, DeepLabV3Plus
from kseg.models.hrnet import HRNetV2, ResidualHRNet
from kseg.models.ode_nets import ODEOnlyNet, ResNetGN, ResODENet
from kseg.models.registry import create_model, list_models, register_model
from kseg.models.segnode import SegNode
from kseg.models.unet import UNet
from kseg.models.unet_ode import NODEsUNet, UNode

__all__ = [
    "ChoiceNet",
    "ContextNet",
    "CrossCooperative",
    "DeepLabV3Plus",
    "HRNetV2",
    "NODEsUNet",
    "ODEOnlyNet",
    "ResNetGN",
    "ResODENet",
    "ResidualHRNet",
    "SegNode",
    "UNet",
    "UNode",
    "create_model",
    "list_models",
    "register_model",
]
