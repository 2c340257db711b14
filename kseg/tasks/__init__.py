"""Tasks own the training contract of a kind of model: compile defaults and losses, the
monitored metric, the main logits, evaluation and prediction (as keras-hub's
`ImageSegmenter` and `ImageClassifier`)."""

from kseg.tasks.base import DICE_LOSSES, LOSSES, Task, main_logits, output_names
from kseg.tasks.classification import ClassificationTask
from kseg.tasks.losses import SparseDiceLoss, SparseFocalLoss, make_loss
from kseg.tasks.segmentation import SegmentationTask

TASKS = {"segmentation": SegmentationTask, "classification": ClassificationTask}


def task_for(model) -> SegmentationTask | ClassificationTask:
    """The task of a kseg model (its `task` attribute; segmentation by default)."""
    return TASKS[getattr(model, "task", "segmentation")]()


__all__ = [
    "DICE_LOSSES",
    "LOSSES",
    "TASKS",
    "Task",
    "ClassificationTask",
    "SegmentationTask",
    "SparseDiceLoss",
    "SparseFocalLoss",
    "main_logits",
    "make_loss",
    "output_names",
    "task_for",
]
