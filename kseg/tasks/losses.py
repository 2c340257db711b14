"""Per-pixel (or per-image) losses of integer labels, with an ignored label value."""

from __future__ import annotations

import keras
from keras import ops

from kseg.errors import UnknownNameError
from kseg.tasks.base import LOSSES


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


def make_loss(name: str, ignore_class: int | None) -> keras.losses.Loss:
    """The loss `name` (one of `LOSSES`) on logits, ignoring `ignore_class`."""
    if name == "cross_entropy":
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=ignore_class
        )
    if name == "focal":
        return SparseFocalLoss(ignore_class=ignore_class)
    raise UnknownNameError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
