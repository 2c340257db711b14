"""Registry entries of the ContextNet variants (Table 4 of Poudel et al. 2018)."""

from __future__ import annotations

from pathlib import Path

from kseg.models.contextnet.contextnet import ContextNet
from kseg.models.contextnet.contextnet_presets import CONTEXTNET_VARIANTS
from kseg.models.registry import register_model
from kseg.train.presets import load_presets, register_presets

for _variant in CONTEXTNET_VARIANTS:
    register_model(f"contextnet_{_variant}", ContextNet, variant=_variant)

# Section 4's branch analysis (Fig. 2): cn14's context or detail branch alone, the
# classifier on its output.
ABLATIONS = {"contextnet_deep_only": "deep", "contextnet_shallow_only": "shallow"}
for _name, _branch in ABLATIONS.items():
    register_model(_name, ContextNet, variant="cn14", branches=_branch, name=_name)


PRESETS = load_presets(Path(__file__).with_name("contextnet_training.toml"))
register_presets(
    [f"contextnet_{v}" for v in CONTEXTNET_VARIANTS] + list(ABLATIONS), PRESETS["contextnet"]
)
