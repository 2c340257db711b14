"""Registry entries of DeepLabV3+ and the cross cooperative network (Ikedo & Hotta 2022)."""

from __future__ import annotations

from kseg.models.deeplab.cooperative import CrossCooperative
from kseg.models.deeplab.deeplab import DeepLabV3Plus
from kseg.models.registry import register_model
from kseg.train.presets import TrainingPreset, register_presets

# Tables 1 and 3's single networks ("Backbone: Resnet" / "XCeption") and the cross
# cooperative network (Xception-65 top, ResNet-101 bottom: the "ours" rows).
register_model("deeplabv3plus_resnet101", DeepLabV3Plus, backbone="resnet101")
register_model("deeplabv3plus_xception65", DeepLabV3Plus, backbone="xception65")
register_model("cross_cooperative", CrossCooperative)


def _deeplab(dataset: str, cooperative: bool) -> TrainingPreset:
    """DeepLabV3+ and cross cooperative training (Ikedo & Hotta 2022) on VOC or Cityscapes."""
    voc = dataset == "voc"
    crop = (513, 513) if voc else (768, 768)
    what = "the cross cooperative network" if cooperative else "the single DeepLabV3+ networks"
    source = (
        f"Ikedo & Hotta 2022 (cross cooperative learning), section 4.2, {what} on "
        f"{'PASCAL VOC 2012' if voc else 'Cityscapes'}: SGD, batch 6, learning rate "
        f"{0.007 if voc else 0.035}; section 4.1: random {crop[0]}x{crop[1]} crops"
        f"{', centre crops for validation' if voc else ''}"
        f"{'; equation 1: loss CE(top) + CE(bottom)' if cooperative else ''}. "
        "Poly power 0.9 and momentum 0.9 are DeepLabV3+'s (Chen et al. 2018), weight "
        "decay 4e-5 DeepLab's training default, as its TF code applies it (L2 on the "
        "convolution kernels, not the depthwise ones); "
        f"{50 if voc else 240} epochs are kseg's (DeepLabV3+ trains 30K iterations at "
        "batch 16 on VOC, about 45 epochs, and 90K at batch 8 on Cityscapes, 242 epochs)"
    )
    return TrainingPreset(
        name=f"{'cross_cooperative' if cooperative else 'deeplabv3plus'}_{dataset}",
        source=source,
        optimizer="sgd",
        learning_rate=0.007 if voc else 0.035,
        poly_power=0.9,
        epochs=50 if voc else 240,
        batch_size=6,
        momentum=0.9,
        weight_decay=4e-5,
        decay_scope="kernels",
        decay_depthwise=False,
        main_weight=0.0 if cooperative else 1.0,
        aux_weight=1.0 if cooperative else 0.0,
        crop=crop,
        eval_crop=crop if voc else None,
    )


for _cooperative, _models in (
    (False, ["deeplabv3plus_resnet101", "deeplabv3plus_xception65"]),
    (True, ["cross_cooperative"]),
):
    _voc = _deeplab("voc", _cooperative)
    register_presets(
        _models, {"voc": _voc, "cityscapes": _deeplab("cityscapes", _cooperative), None: _voc}
    )
