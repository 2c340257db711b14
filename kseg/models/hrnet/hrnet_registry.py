"""Registry entries: HRNetV2-W48 and SegNode's Baseline, with and without OCR."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kseg.models.hrnet.hrnet import HRNetV2, ResidualHRNet
from kseg.models.registry import register_model
from kseg.models.segnode.segnode_registry import IMAGENET_PRESET, SEGNODE_BASELINE_PRESETS
from kseg.tasks.losses import CITYSCAPES_CLASS_WEIGHTS
from kseg.train.presets import load_presets, register_presets, with_ocr_aux

register_model("hrnetv2_w48", HRNetV2, width=48)
register_model("hrnetv2_w48_ocr", HRNetV2, width=48, ocr=True)
register_model("residual_hrnet", ResidualHRNet)

PRESETS = load_presets(Path(__file__).with_name("hrnet_training.toml"))
HRNETV2_PRESET = PRESETS["hrnetv2"]
# HRNet's Cityscapes protocol (HRNet-Semantic-Segmentation's cityscapes configs): 512x1024
# crops, OHEM (threshold 0.9, at least 131,072 pixels) with its class weights.
HRNETV2_CITYSCAPES_PRESET = dataclasses.replace(
    HRNETV2_PRESET,
    name="hrnetv2_cityscapes",
    source=f"{HRNETV2_PRESET.source}; HRNet's Cityscapes configs: 512x1024 crops, OHEM "
    "(threshold 0.9, 131,072 pixels kept) with its class weights",
    crop=(512, 1024),
    loss="ohem",
    class_weights=CITYSCAPES_CLASS_WEIGHTS,
)
register_presets(
    "hrnetv2_w48",
    {
        "cityscapes": HRNETV2_CITYSCAPES_PRESET,
        "imagenet": IMAGENET_PRESET,
        None: HRNETV2_PRESET,
    },
)
register_presets(
    "hrnetv2_w48_ocr",
    {
        "cityscapes": with_ocr_aux(HRNETV2_CITYSCAPES_PRESET),
        None: with_ocr_aux(HRNETV2_PRESET),
    },
)
register_presets("residual_hrnet", {**SEGNODE_BASELINE_PRESETS, "imagenet": IMAGENET_PRESET})
