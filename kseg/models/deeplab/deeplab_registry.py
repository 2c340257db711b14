"""Registry entries of DeepLabV3+ and the cross cooperative network (Ikedo & Hotta 2022)."""

from __future__ import annotations

from pathlib import Path

from kseg.models.deeplab.cooperative import CrossCooperative
from kseg.models.deeplab.deeplab import DeepLabV3Plus
from kseg.models.registry import register_model
from kseg.train.presets import load_presets, register_presets

# Tables 1 and 3's single networks ("Backbone: Resnet" / "XCeption") and the cross
# cooperative network (Xception-65 top, ResNet-101 bottom: the "ours" rows).
register_model("deeplabv3plus_resnet101", DeepLabV3Plus, backbone="resnet101")
register_model("deeplabv3plus_xception65", DeepLabV3Plus, backbone="xception65")
register_model("cross_cooperative", CrossCooperative)


PRESETS = load_presets(Path(__file__).with_name("deeplab_training.toml"))
for _prefix, _models in (
    ("deeplabv3plus", ["deeplabv3plus_resnet101", "deeplabv3plus_xception65"]),
    ("cross_cooperative", ["cross_cooperative"]),
):
    _voc = PRESETS[f"{_prefix}_voc"]
    register_presets(
        _models, {"voc": _voc, "cityscapes": PRESETS[f"{_prefix}_cityscapes"], None: _voc}
    )
