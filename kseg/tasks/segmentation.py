"""The segmentation task: its training contract (loss on every output, mean IoU of the
main logits), evaluation to a confusion matrix and prediction of label maps."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kseg.data.base import IGNORE_LABEL
from kseg.tasks.base import Task, main_logits, output_names
from kseg.tasks.losses import make_loss
from kseg.train.metrics import MeanIoU, confusion_matrix
from kseg.train.presets import TrainingPreset


class SegmentationTask(Task):
    """Per-pixel classification with the ignore label 255.

    A model's outputs are one logits tensor, or a dict whose "logits" is the prediction and
    whose other entries are auxiliary heads (ContextNet, OCR) or the two networks of cross
    cooperative learning; the preset weighs them (`main_weight`, `aux_weight`).

    Example:
        >>> task = SegmentationTask()
        >>> task.compile(model, preset_for("contextnet_cn14"), 19, total_steps=1000)
    """

    name = "segmentation"
    # PreciseBN re-estimates BatchNorm statistics before each validation.
    precise_bn = True

    def losses(self, model: keras.Model, preset: TrainingPreset, loss: str) -> dict:
        """`loss` (with the ignore label) on every output, "logits" weighted by
        `preset.main_weight` and the others by `preset.aux_weight`."""
        fn = make_loss(loss, IGNORE_LABEL)
        names = output_names(model)
        if not names:
            return {"loss": fn}
        weights = {n: preset.main_weight if n == "logits" else preset.aux_weight for n in names}
        return {"loss": {n: fn for n in names}, "loss_weights": weights}

    def metrics(self, model: keras.Model, num_classes: int):
        """Mean IoU of "logits"."""
        if output_names(model):
            return {"logits": [MeanIoU(num_classes)]}
        return [MeanIoU(num_classes)]

    def monitor(self, model: keras.Model) -> str:
        """The validation score that picks the best checkpoint."""
        return "val_logits_mean_iou" if output_names(model) else "val_mean_iou"

    def targets(self, ds: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
        """Repeats the label for every output of a dict-output model."""
        names = output_names(model)
        if not names:
            return ds
        return ds.map(lambda x, y: (x, {n: y for n in names}))

    def evaluate(self, model: keras.Model, ds: tf.data.Dataset, num_classes: int) -> np.ndarray:
        """Confusion matrix of the model's arg-max over a dataset of (image, label)."""

        @tf.function
        def step(images, labels):
            predictions = tf.argmax(main_logits(model(images, training=False)), axis=-1)
            return confusion_matrix(labels, predictions, num_classes)

        total = np.zeros((num_classes, num_classes), np.int64)
        for images, labels in ds:
            total += step(images, labels).numpy()
        return total

    def evaluate_file(self, predictor, ds: tf.data.Dataset, num_classes: int) -> np.ndarray:
        """`evaluate` for an exported file, through a `kseg.predict.Predictor` (each image
        resized to the file's input size and the logits back). The pipeline's images are
        uint8 / 255, so they go back to uint8 exactly."""
        total = np.zeros((num_classes, num_classes), np.int64)
        for images, labels in ds:
            uint8 = np.round(images.numpy() * 255).astype(np.uint8)
            for logits, label in zip(predictor.logits(list(uint8)), labels.numpy(), strict=True):
                total += confusion_matrix(label, logits.argmax(-1), num_classes).numpy()
        return total

    def predict(self, model: keras.Model, image: np.ndarray, multiple: int = 1) -> np.ndarray:
        """Training ids (H x W uint8) of one uint8 image, padded to `multiple` and cropped
        back."""
        h, w = image.shape[:2]
        ph, pw = (-h) % multiple, (-w) % multiple
        x = np.pad(image.astype("float32") / 255.0, ((0, ph), (0, pw), (0, 0)))[None]
        logits = main_logits(model(x, training=False))
        return np.argmax(np.asarray(logits)[0, :h, :w], axis=-1).astype(np.uint8)
