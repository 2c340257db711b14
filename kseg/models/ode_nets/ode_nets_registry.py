"""Registry entries: the ResNet, Res-ODE Net and ODE-only Net of Carrara et al. 2019."""

from __future__ import annotations

from kseg.models.ode_nets.ode_nets import ODEOnlyNet, ResNetGN, ResODENet
from kseg.models.registry import register_model


@register_model("resnet_gn")
def resnet_gn(**kwargs) -> ResNetGN:
    return ResNetGN(**kwargs)


@register_model("res_ode_net")
def res_ode_net(**kwargs) -> ResODENet:
    return ResODENet(**kwargs)


@register_model("ode_only_net")
def ode_only_net(**kwargs) -> ODEOnlyNet:
    return ODEOnlyNet(**kwargs)
