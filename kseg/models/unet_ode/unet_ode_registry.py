"""Registry entries: the neural-ODE U-Nets of SegNode's Table 1."""

from __future__ import annotations

from kseg.models.registry import register_model
from kseg.models.segnode.segnode_registry import SEGNODE_BASELINE_PRESETS
from kseg.models.unet_ode.unet_ode import NODEsUNet, UNode
from kseg.train.presets import register_presets

register_model("unode", UNode)
register_model("nodes_unet", NODEsUNet)

register_presets(["unode", "nodes_unet"], SEGNODE_BASELINE_PRESETS)
