"""Training engine shared by the recipes: presets, schedules, metrics, checkpoints."""

from kseg.train.checkpoints import AtomicCheckpoint, last_checkpoint
from kseg.train.engine import (
    compile_classifier,
    compile_model,
    evaluate_confusion,
    fit,
    predict_labels,
)
from kseg.train.metrics import MeanIoU, confusion_matrix, iou_per_class, iou_table, mean_iou
from kseg.train.presets import PRESETS, TrainingPreset, preset_for
from kseg.train.schedules import PolyDecay, ResumableReduceLROnPlateau
from kseg.train.strategy import STRATEGIES, get_strategy

__all__ = [
    "PRESETS",
    "STRATEGIES",
    "AtomicCheckpoint",
    "MeanIoU",
    "PolyDecay",
    "ResumableReduceLROnPlateau",
    "TrainingPreset",
    "compile_classifier",
    "compile_model",
    "confusion_matrix",
    "evaluate_confusion",
    "fit",
    "get_strategy",
    "iou_per_class",
    "iou_table",
    "last_checkpoint",
    "mean_iou",
    "predict_labels",
    "preset_for",
]
