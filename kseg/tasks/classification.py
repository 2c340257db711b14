"""The image-classification task: cross-entropy on the class logits, accuracy, and
evaluation in batches."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kseg.tasks.base import Task


class ClassificationTask(Task):
    """One label per image.

    Example:
        >>> task = ClassificationTask()
        >>> task.compile(model, preset_for("res_ode_net"), 10, total_steps=1000)
    """

    name = "classification"

    def metrics(self, model: keras.Model, num_classes: int):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def monitor(self, model: keras.Model) -> str:
        return "val_accuracy"

    def targets(self, ds: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
        return ds

    def logits(self, model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class logits of normalised images, in batches."""
        return np.concatenate(
            [model.predict(x[i : i + batch_size], verbose=0) for i in range(0, len(x), batch_size)]
        )

    def evaluate(self, model: keras.Model, x: np.ndarray, labels: np.ndarray) -> float:
        """Accuracy on normalised images."""
        return float(np.mean(self.logits(model, x).argmax(-1) == labels))

    def predict(self, model: keras.Model, x: np.ndarray) -> np.ndarray:
        """The class of each normalised image."""
        return self.logits(model, x).argmax(-1)
