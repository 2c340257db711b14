"""Registry entries: ChoiceNet-30, -37 and -40 (Rayhan et al., Table 1)."""

from __future__ import annotations

from pathlib import Path

from kseg.models.choicenet.choicenet import ChoiceNet
from kseg.models.registry import register_model
from kseg.train.presets import load_presets, register_presets

# Growth per preset, set to Table 1's CIFAR-10 parameter counts (see choicenet.py).
WIDTHS = {"choicenet_30": 67, "choicenet_37": 81, "choicenet_40": 90}


for _name, _width in WIDTHS.items():
    register_model(_name, ChoiceNet, name=_name, width=_width)

PRESETS = load_presets(Path(__file__).with_name("choicenet_training.toml"))
CHOICENET_UNET_PRESET = PRESETS["choicenet_unet"]  # unet_registry.py gives it to its U-Nets
register_presets(list(WIDTHS), PRESETS["choicenet"])
