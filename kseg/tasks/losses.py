"""Per-pixel (or per-image) losses of integer labels, with an ignored label value."""

from __future__ import annotations

import keras
from keras import ops

from kseg.errors import UnknownNameError
from kseg.tasks.base import DICE_LOSSES, LOSSES


@keras.saving.register_keras_serializable(package="kseg")
class SparseFocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection",
    arXiv:1708.02002) of integer labels and logits: -(1 - p_y)^gamma log p_y, averaged over
    the labels that are not `ignore_class`.

    Args:
        gamma: the focusing parameter (0 gives cross-entropy).
        ignore_class: a label value that contributes nothing (None: none).
    """

    def __init__(self, gamma: float = 2.0, ignore_class: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.gamma = gamma
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        keep = ops.ones_like(y_true, "float32")
        if self.ignore_class is not None:
            keep = ops.cast(ops.not_equal(y_true, self.ignore_class), "float32")
            y_true = ops.where(ops.equal(y_true, self.ignore_class), 0, y_true)
        log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        log_p_y = ops.take_along_axis(log_p, ops.expand_dims(y_true, -1), axis=-1)[..., 0]
        loss = -((1.0 - ops.exp(log_p_y)) ** self.gamma) * log_p_y * keep
        axes = tuple(range(1, len(loss.shape)))
        if not axes:
            return loss
        # The mean over the kept labels of each example, as ignore_class does in Keras.
        return ops.sum(loss, axis=axes) / ops.maximum(ops.sum(keep, axis=axes), 1.0)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "ignore_class": self.ignore_class}


# HRNet's Cityscapes class weights (HRNet-Semantic-Segmentation, lib/datasets/cityscapes.py),
# in training-id order: road, sidewalk, ..., bicycle.
CITYSCAPES_CLASS_WEIGHTS = (
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
    0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507,
)  # fmt: skip


@keras.saving.register_keras_serializable(package="kseg")
class SparseOhemCrossEntropy(keras.losses.Loss):
    """Online hard example mining cross-entropy as HRNet trains Cityscapes (Wang et al.
    2020, HRNet-Semantic-Segmentation's `OhemCrossEntropy`): over the batch's labelled
    pixels, the (class-weighted) cross-entropy is averaged over the pixels whose predicted
    probability of the true class is below max(`threshold`, the `min_kept`-th smallest
    such probability), so at least `min_kept` of the hardest pixels always count.

    Without `threshold` it is the class-weighted cross-entropy, PyTorch's weighted mean
    (sum of w_y * loss over sum of w_y). Each example of the batch returns the batch's
    value, so Keras' mean over the batch is it.

    Args:
        threshold: probability under which a pixel is hard (HRNet: 0.9); None: no mining.
        min_kept: pixels kept at least (HRNet: 131,072).
        class_weights: a weight per class (None: 1).
        ignore_class: a label value that contributes nothing.
    """

    def __init__(
        self,
        threshold: float | None = 0.9,
        min_kept: int = 131072,
        class_weights=None,
        ignore_class: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.threshold, self.min_kept = threshold, int(min_kept)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        logits = ops.reshape(ops.cast(y_pred, "float32"), (-1, y_pred.shape[-1]))
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        keep = ops.ones_like(labels, "bool")
        if self.ignore_class is not None:
            keep = ops.not_equal(labels, self.ignore_class)
        labels = ops.where(keep, labels, 0)
        log_p = ops.log_softmax(logits, axis=-1)
        log_p_y = ops.take_along_axis(log_p, ops.expand_dims(labels, -1), axis=-1)[:, 0]
        weight = ops.ones_like(log_p_y)
        if self.class_weights is not None:
            weight = ops.take(ops.convert_to_tensor(self.class_weights, "float32"), labels)
        if self.threshold is None:
            kept = ops.cast(keep, "float32") * weight
            value = ops.sum(-log_p_y * kept) / ops.maximum(ops.sum(kept), 1e-12)
        else:
            p_y = ops.where(keep, ops.exp(log_p_y), 2.0)  # ignored pixels sort last
            count = ops.sum(ops.cast(keep, "int32"))
            k = ops.minimum(self.min_kept, ops.maximum(count - 1, 0))
            kth = ops.take(ops.sort(p_y), k)
            hard = keep & (p_y < ops.maximum(kth, self.threshold))
            hard_f = ops.cast(hard, "float32")
            value = ops.sum(-log_p_y * weight * hard_f) / ops.maximum(ops.sum(hard_f), 1.0)
        return value  # one value for the batch: Keras' mean over it is the value

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "min_kept": self.min_kept,
            "class_weights": self.class_weights,
            "ignore_class": self.ignore_class,
        }


@keras.saving.register_keras_serializable(package="kseg")
class SparseDiceLoss(keras.losses.Loss):
    """Soft Dice loss (Milletari et al. 2016, "V-Net", arXiv:1606.04797) of integer labels
    and logits, over the batch's labelled pixels: for each class c, with p the softmax,
    dice_c = (2 sum(p_c [y = c]) + smooth) / (sum(p_c) + sum([y = c]) + smooth), and the
    loss is the mean over the classes of 1 - dice_c, 0 for a class the batch's labels do
    not show. At the default smooth = 0 it is segmentation_models_pytorch's
    `DiceLoss(mode="multiclass", ignore_index=...)` (bench/dice_parity.py; with a smooth,
    its version 0.6 adds it twice to each side). It weighs a small object's pixels as much
    as a large one's, which helps where one class fills most of each image (a polyp, a
    lesion); `cross_entropy_dice` adds cross-entropy to it, the usual pairing.

    Each example of the batch returns the batch's value, so Keras' mean over it is it.

    Args:
        smooth: added to both sides of each class's ratio (0, segmentation_models').
        eps: the least denominator.
        ignore_class: a label value that contributes nothing.
    """

    def __init__(
        self, smooth: float = 0.0, eps: float = 1e-7, ignore_class: int | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.smooth, self.eps, self.ignore_class = smooth, eps, ignore_class

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1]
        probabilities = ops.softmax(ops.reshape(ops.cast(y_pred, "float32"), (-1, classes)))
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        keep = ops.ones_like(labels, "float32")
        if self.ignore_class is not None:
            keep = ops.cast(ops.not_equal(labels, self.ignore_class), "float32")
            labels = ops.where(ops.equal(labels, self.ignore_class), 0, labels)
        truth = ops.one_hot(labels, classes) * keep[:, None]
        probabilities = probabilities * keep[:, None]
        intersection = ops.sum(probabilities * truth, axis=0)
        cardinality = ops.sum(probabilities + truth, axis=0)
        dice = (2.0 * intersection + self.smooth) / ops.maximum(cardinality + self.smooth, self.eps)
        shown = ops.cast(ops.sum(truth, axis=0) > 0, "float32")
        return ops.mean((1.0 - dice) * shown)

    def get_config(self):
        return {
            **super().get_config(),
            "smooth": self.smooth,
            "eps": self.eps,
            "ignore_class": self.ignore_class,
        }


@keras.saving.register_keras_serializable(package="kseg")
class SparseCrossEntropyDice(keras.losses.Loss):
    """Cross-entropy plus `SparseDiceLoss`, each with weight 1, ignoring `ignore_class`."""

    def __init__(self, ignore_class: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.ignore_class = ignore_class
        self.cross_entropy = SparseOhemCrossEntropy(None, ignore_class=ignore_class)
        self.dice = SparseDiceLoss(ignore_class=ignore_class)

    def call(self, y_true, y_pred):
        return self.cross_entropy.call(y_true, y_pred) + self.dice.call(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


def make_loss(name: str, ignore_class: int | None, class_weights=None) -> keras.losses.Loss:
    """The loss `name` (one of `LOSSES`, or of `DICE_LOSSES` for segmentation) on logits,
    ignoring `ignore_class`, with `class_weights` (one per class) for "cross_entropy" and
    "ohem"."""
    if name == "cross_entropy" and class_weights is not None:
        return SparseOhemCrossEntropy(None, class_weights=class_weights, ignore_class=ignore_class)
    if name == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=ignore_class
        )
    if name == "ohem":
        return SparseOhemCrossEntropy(class_weights=class_weights, ignore_class=ignore_class)
    if name == "focal":
        return SparseFocalLoss(ignore_class=ignore_class)
    if name == "dice":
        return SparseDiceLoss(ignore_class=ignore_class)
    if name == "cross_entropy_dice":
        return SparseCrossEntropyDice(ignore_class=ignore_class)
    raise UnknownNameError(
        f"unknown loss {name!r}; choose one of {', '.join(LOSSES + DICE_LOSSES)}"
    )
