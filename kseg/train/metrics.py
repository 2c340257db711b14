"""Confusion matrices, IoU and Dice per class and their means, with the ignore label left
out."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kseg.data.base import IGNORE_LABEL


def confusion_matrix(labels, predictions, num_classes: int) -> tf.Tensor:
    """int64[num_classes, num_classes], rows = ground truth, columns = prediction.

    Pixels whose label is outside [0, num_classes) (the ignore label) are not counted.
    """
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
    keep = (labels >= 0) & (labels < num_classes)
    # The pixels left out are counted in one more bin, dropped after: a boolean mask
    # would copy the kept pixels into a tensor of unknown size, ops to trace in every
    # training step and a copy to make at each.
    cells = num_classes**2
    index = tf.where(keep, labels * num_classes + predictions, tf.constant(cells, tf.int64))
    counts = tf.math.bincount(index, minlength=cells + 1, maxlength=cells + 1, dtype=tf.int64)
    return tf.reshape(counts[:cells], [num_classes, num_classes])


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from labels and
    predictions (left out of the mean, as the official Cityscapes evaluation does)."""
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    return _share(tp, confusion.sum(0) + confusion.sum(1) - tp)


def mean_iou(confusion: np.ndarray) -> float:
    return _mean_present(iou_per_class(confusion))


def dice_per_class(confusion: np.ndarray) -> np.ndarray:
    """Dice (F1) = 2 TP / (2 TP + FP + FN) = 2 IoU / (1 + IoU) per class, the score medical
    segmentation reports; NaN where IoU is."""
    iou = iou_per_class(confusion)
    return 2 * iou / (1 + iou)


def mean_dice(confusion: np.ndarray) -> float:
    """The mean of `dice_per_class` over the classes that are not NaN (mmsegmentation's
    mDice)."""
    return _mean_present(dice_per_class(confusion))


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole, NaN where whole is 0 (a score with nothing to score)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, part / whole, np.nan)


def _mean_present(values: np.ndarray) -> float:
    """The mean of the values that are not NaN; NaN when none is."""
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


def precision_per_class(confusion: np.ndarray) -> np.ndarray:
    """Precision = TP / (TP + FP) per class: of the pixels predicted as the class, the share
    that are; NaN for a class never predicted."""
    confusion = np.asarray(confusion, np.float64)
    return _share(np.diag(confusion), confusion.sum(0))


def recall_per_class(confusion: np.ndarray) -> np.ndarray:
    """Recall = TP / (TP + FN) per class: of the class's pixels, the share found
    (mmsegmentation's per-class "Acc"); NaN for a class absent from the labels."""
    confusion = np.asarray(confusion, np.float64)
    return _share(np.diag(confusion), confusion.sum(1))


def mean_recall(confusion: np.ndarray) -> float:
    """The mean of `recall_per_class` over the classes in the labels (mmsegmentation's
    mAcc, the mean class accuracy)."""
    return _mean_present(recall_per_class(confusion))


def pixel_accuracy(confusion: np.ndarray) -> float:
    """The share of labelled pixels predicted right (mmsegmentation's aAcc)."""
    return float(np.trace(confusion) / max(np.sum(confusion), 1))


def iou_table(confusion: np.ndarray, class_names) -> str:
    """A printable per-class table of IoU, Dice, precision and recall, with the means and
    pixel accuracy."""

    def cell(value: float) -> str:
        return f"{'nan' if np.isnan(value) else f'{100 * value:6.2f}':>7s}"

    columns = (iou_per_class, dice_per_class, precision_per_class, recall_per_class)
    lines = [f"{'class':20s} {'IoU':>7s} {'Dice':>7s} {'Prec.':>7s} {'Recall':>7s}"]
    for name, *values in zip(class_names, *(c(confusion) for c in columns), strict=True):
        lines.append(f"{name:20s} {' '.join(cell(v) for v in values)}")
    lines.append(f"{'mean IoU':20s} {cell(mean_iou(confusion))}")
    lines.append(f"{'mean Dice':20s} {cell(mean_dice(confusion))}")
    lines.append(f"{'mean recall (mAcc)':20s} {cell(mean_recall(confusion))}")
    lines.append(f"{'pixel accuracy':20s} {cell(pixel_accuracy(confusion))}")
    return "\n".join(lines)


@keras.saving.register_keras_serializable(package="kseg")
class MeanIoU(keras.metrics.Metric):
    """Mean IoU over an epoch from logits (N, H, W, C) and labels with 255 ignored."""

    def __init__(self, num_classes: int, name: str = "mean_iou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.confusion = self.add_weight(
            shape=(num_classes, num_classes), initializer="zeros", dtype="int64", name="confusion"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        predictions = tf.argmax(y_pred, axis=-1)
        self.confusion.assign_add(confusion_matrix(y_true, predictions, self.num_classes))

    def result(self):
        cm = tf.cast(self.confusion, tf.float64)
        tp = tf.linalg.diag_part(cm)
        denominator = tf.reduce_sum(cm, 0) + tf.reduce_sum(cm, 1) - tp
        # The mean over the classes present: an absent class (0 / 0) adds 0 to the sum
        # and nothing to the count, and with none present the mean is 0 / 0, NaN.
        iou = tf.math.divide_no_nan(tp, denominator)
        present = tf.reduce_sum(tf.cast(denominator > 0, tf.float64))
        return tf.cast(tf.reduce_sum(iou) / present, tf.float32)

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


__all__ = ["IGNORE_LABEL", "MeanIoU", "confusion_matrix", "iou_per_class", "iou_table", "mean_iou"]
