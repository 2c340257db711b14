"""Registry entries: ChoiceNet-30, -37 and -40 (Rayhan et al., Table 1)."""

from __future__ import annotations

from kseg.models.choicenet.choicenet import ChoiceNet
from kseg.models.registry import register_model

# Growth per preset, set to Table 1's CIFAR-10 parameter counts (see choicenet.py).
WIDTHS = {"choicenet_30": 67, "choicenet_37": 81, "choicenet_40": 90}


def _factory(name: str):
    def build(**kwargs) -> ChoiceNet:
        return ChoiceNet(**{"name": name, "width": WIDTHS[name], **kwargs})

    build.__name__ = name
    build.__doc__ = f"ChoiceNet with growth {WIDTHS[name]} (Table 1: {name})."
    return register_model(name)(build)


choicenet_30 = _factory("choicenet_30")
choicenet_37 = _factory("choicenet_37")
choicenet_40 = _factory("choicenet_40")
