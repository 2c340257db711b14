"""Registry entries: SegNode and SegNode+OCR."""

from __future__ import annotations

import dataclasses

from kseg.models.registry import register_model
from kseg.models.segnode.segnode import SegNode
from kseg.train.presets import TrainingPreset, register_presets, with_ocr_aux

register_model("segnode", SegNode)
register_model("segnode_ocr", SegNode, ocr=True)

SEGNODE_PRESET = TrainingPreset(
    name="segnode",
    source=(
        "Khoshsirat & Kambhamettu (SegNode), section 4.1: SGD, learning rate 0.1, "
        "momentum 0.9, no weight decay, poly power 0.9; batch 16 and 484 epochs are the "
        "Baseline's and HRNetV2's (the paper states none for SegNode)"
    ),
    optimizer="sgd",
    learning_rate=0.1,
    poly_power=0.9,
    epochs=484,
    batch_size=16,
    momentum=0.9,
)
# SegNode's Baseline; U-Node and NODEs-UNet train with it too (see its source).
SEGNODE_BASELINE_PRESET = TrainingPreset(
    name="segnode_baseline",
    source=(
        "Khoshsirat & Kambhamettu (SegNode), section 4.1, Baseline network: AdamW, weight "
        "decay 0.05, batch 16, poly power 0.9, learning rate 1e-4; epochs: HRNetV2's 484 "
        "(the paper gives none). U-Node and NODEs-UNet: the paper tuned them without "
        "saying how; kseg trains them with this preset"
    ),
    optimizer="adamw",
    learning_rate=1e-4,
    poly_power=0.9,
    epochs=484,
    batch_size=16,
    weight_decay=0.05,
)


def _cityscapes_crops(preset: TrainingPreset) -> dict:
    """{"cityscapes": `preset` on HRNet's 512x1024 crops, None: `preset`}: the paper trains
    on Cityscapes with HRNet's code, whose configs crop 512x1024 (full 1024x2048 frames at
    batch 16 do not fit one GPU)."""
    cityscapes = dataclasses.replace(
        preset,
        name=f"{preset.name}_cityscapes",
        source=f"{preset.source}; on Cityscapes HRNet's 512x1024 crops",
        crop=(512, 1024),
    )
    return {"cityscapes": cityscapes, None: preset}


SEGNODE_PRESETS = _cityscapes_crops(SEGNODE_PRESET)
SEGNODE_BASELINE_PRESETS = _cityscapes_crops(SEGNODE_BASELINE_PRESET)
register_presets("segnode", SEGNODE_PRESETS)
register_presets("segnode_ocr", {k: with_ocr_aux(v) for k, v in SEGNODE_PRESETS.items()})
