"""Registry entries: SegNode and SegNode+OCR."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kseg.models.registry import register_model
from kseg.models.segnode.segnode import SegNode
from kseg.train.presets import TrainingPreset, load_presets, register_presets, with_ocr_aux

register_model("segnode", SegNode)
register_model("segnode_ocr", SegNode, ocr=True)

PRESETS = load_presets(Path(__file__).with_name("segnode_training.toml"))


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


SEGNODE_PRESETS = _cityscapes_crops(PRESETS["segnode"])
# U-Node and NODEs-UNet train with the Baseline's preset too (see its source).
SEGNODE_BASELINE_PRESETS = _cityscapes_crops(PRESETS["segnode_baseline"])
# ImageNet pre-training (`python -m kseg.recipes.imagenet`), for SegNode, its Baseline and
# HRNetV2 alike.
IMAGENET_PRESET = PRESETS["segnode_imagenet"]
register_presets("segnode", {**SEGNODE_PRESETS, "imagenet": IMAGENET_PRESET})
register_presets("segnode_ocr", {k: with_ocr_aux(v) for k, v in SEGNODE_PRESETS.items()})
