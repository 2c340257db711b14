"""The segmentation task: its training contract (loss on every output, mean IoU of the
main logits), evaluation to a confusion matrix and prediction of label maps."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kseg.data.base import IGNORE_LABEL
from kseg.errors import UserError
from kseg.tasks.base import DICE_LOSSES, LOSSES, Task, main_logits, output_names
from kseg.tasks.losses import make_loss
from kseg.train.metrics import MeanIoU, confusion_matrix
from kseg.train.presets import TrainingPreset

# The two networks of cross cooperative learning (Ikedo & Hotta 2022, Table 1 scores each).
NETWORKS = ("top_logits", "bottom_logits")


def scored_outputs(model: keras.Model) -> list[str]:
    """The outputs evaluation scores: "logits", and the cooperative networks' when present."""
    names = output_names(model) or []
    return ["logits", *(n for n in NETWORKS if n in names)]


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
    loss_names = LOSSES + DICE_LOSSES
    # PreciseBN re-estimates BatchNorm statistics before each validation.
    precise_bn = True
    ignore_label = IGNORE_LABEL

    def losses(
        self, model: keras.Model, preset: TrainingPreset, loss: str, class_weights=None
    ) -> dict:
        """`loss` (with the ignore label and `class_weights`) on every output, "logits"
        weighted by `preset.main_weight` and the others by `preset.aux_weight`."""
        names = output_names(model)
        if not names:
            return super().losses(model, preset, loss, class_weights)
        fn = make_loss(loss, self.ignore_label, class_weights)
        weights = {n: preset.main_weight if n == "logits" else preset.aux_weight for n in names}
        return {"loss": {n: fn for n in names}, "loss_weights": weights}

    def metrics(self, model: keras.Model, num_classes: int):
        """Mean IoU of "logits", and of each network of cross cooperative learning."""
        if output_names(model):
            return {name: [MeanIoU(num_classes)] for name in scored_outputs(model)}
        return [MeanIoU(num_classes)]

    def monitor(self, model: keras.Model, network: str | None = None) -> str:
        """The validation score that picks the best checkpoint: the main logits' mean IoU,
        or with `network` "top" / "bottom" that of one network of cross cooperative
        learning ("mean": the main logits, the networks' mean)."""
        if network in (None, "mean"):
            return "val_logits_mean_iou" if output_names(model) else "val_mean_iou"
        name = f"{network}_logits"
        if name not in scored_outputs(model):
            raise UserError(
                f"--monitor {network}: {model.name} has no {name} output; top and bottom "
                "are the two networks of cross_cooperative"
            )
        return f"val_{name}_mean_iou"

    def targets(self, ds: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
        """Repeats the label for every output of a dict-output model."""
        names = output_names(model)
        if not names:
            return ds
        return ds.map(lambda x, y: (x, {n: y for n in names}))

    def evaluate(self, model: keras.Model, ds: tf.data.Dataset, num_classes: int) -> np.ndarray:
        """Confusion matrix of the model's arg-max over a dataset of (image, label)."""
        return self.evaluate_outputs(model, ds, num_classes)["logits"]

    def evaluate_outputs(
        self,
        model: keras.Model,
        ds: tf.data.Dataset,
        num_classes: int,
        scales=None,
        flip: bool = False,
        window: tuple[int, int] | None = None,
        size: tuple[int, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """`evaluate` of every scored output in one pass: {"logits": confusion matrix} and,
        for cross cooperative learning, "top_logits" and "bottom_logits" too.

        With `scales` (e.g. 0.5 ... 1.75) or `flip`, each image of `ds` (batches of one,
        unpadded) is predicted from its softmax probabilities averaged over the scales and
        mirrors, scaled images larger than `window` in sliding windows
        (`kseg.tasks.augmented`); `size` resizes every image to it first (LIP's test
        protocol) and the prediction back."""
        names = scored_outputs(model)
        if scales is not None or flip or size is not None:
            return self._evaluate_augmented(
                model, ds, num_classes, names, scales or (1.0,), flip, window, size
            )

        @tf.function
        def step(images, labels):
            outputs = model(images, training=False)
            if not isinstance(outputs, dict):
                outputs = {"logits": outputs}
            return {
                n: confusion_matrix(labels, tf.argmax(outputs[n], axis=-1), num_classes)
                for n in names
            }

        total = {n: np.zeros((num_classes, num_classes), np.int64) for n in names}
        for images, labels in ds:
            for n, confusion in step(images, labels).items():
                total[n] += confusion.numpy()
        return total

    def _evaluate_augmented(self, model, ds, num_classes, names, scales, flip, window, size):
        from kseg.tasks.augmented import augmented_probabilities

        multiple = getattr(model, "input_multiple", 1)
        total = {n: np.zeros((num_classes, num_classes), np.int64) for n in names}
        for images, labels in ds:
            for image, label in zip(images.numpy(), labels.numpy(), strict=True):
                probabilities = augmented_probabilities(
                    model, image, scales, flip, window, multiple, names, size
                )
                for n, p in probabilities.items():
                    total[n] += confusion_matrix(label, p.argmax(-1), num_classes).numpy()
        return total

    def evaluate_file(self, predictor, ds: tf.data.Dataset, num_classes: int) -> np.ndarray:
        """`evaluate` for an exported file, through a `kseg.predict.Predictor` (each image
        resized to the file's input size and the logits back). The pipeline's images are
        uint8 / 255, so they go back to uint8 exactly."""
        from kseg.predict.standalone import resized_labels

        total = np.zeros((num_classes, num_classes), np.int64)
        for images, labels in ds:
            uint8 = list(np.round(images.numpy() * 255).astype(np.uint8))
            for image, logits, label in zip(
                uint8, predictor.model_logits(uint8), labels.numpy(), strict=True
            ):
                predicted = resized_labels(logits, *image.shape[:2])
                total += confusion_matrix(label, predicted, num_classes).numpy()
        return total

    def predict(self, model: keras.Model, image: np.ndarray, multiple: int = 1) -> np.ndarray:
        """Training ids (H x W uint8) of one uint8 image, padded to `multiple` and cropped
        back."""
        h, w = image.shape[:2]
        ph, pw = (-h) % multiple, (-w) % multiple
        x = np.pad(image.astype("float32") / 255.0, ((0, ph), (0, pw), (0, 0)))[None]
        logits = main_logits(model(x, training=False))
        return np.argmax(np.asarray(logits)[0, :h, :w], axis=-1).astype(np.uint8)
