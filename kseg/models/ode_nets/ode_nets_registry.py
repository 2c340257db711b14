"""Registry entries: the ResNet, Res-ODE Net and ODE-only Net of Carrara et al. 2019."""

from __future__ import annotations

from pathlib import Path

from kseg.models.ode_nets.ode_nets import ODEOnlyNet, ResNetGN, ResODENet
from kseg.models.registry import register_model
from kseg.train.presets import load_presets, register_presets

register_model("resnet_gn", ResNetGN)
register_model("res_ode_net", ResODENet)
register_model("ode_only_net", ODEOnlyNet)

PRESETS = load_presets(Path(__file__).with_name("ode_nets_training.toml"))
register_presets(["resnet_gn", "res_ode_net", "ode_only_net"], PRESETS["ode_nets"])
