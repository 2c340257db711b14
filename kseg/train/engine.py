"""The training, evaluation and prediction steps shared by every recipe."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from kseg.data.base import IGNORE_LABEL
from kseg.train.checkpoints import AtomicCheckpoint, last_checkpoint, read_state
from kseg.train.metrics import MeanIoU, confusion_matrix
from kseg.train.precise_bn import PreciseBN
from kseg.train.presets import TrainingPreset


def output_names(model: keras.Model) -> list[str] | None:
    """Names of a dict-output model's outputs ("logits" first), None for one output."""
    out = model.output
    if isinstance(out, dict):
        return ["logits", *sorted(k for k in out if k != "logits")]
    return None


def monitor_name(model: keras.Model) -> str:
    """The validation score that picks the best checkpoint."""
    if getattr(model, "task", "segmentation") == "classification":
        return "val_accuracy"
    return "val_logits_mean_iou" if output_names(model) else "val_mean_iou"


def with_targets(ds: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
    """Repeats the label for every output of a dict-output model (main and auxiliary)."""
    names = output_names(model)
    if not names:
        return ds
    return ds.map(lambda x, y: (x, {n: y for n in names}))


def compile_model(
    model: keras.Model,
    preset: TrainingPreset,
    num_classes: int,
    total_steps: int,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """Cross-entropy with the ignore label on every output ("logits" weighted by
    `preset.main_weight`, the others by `preset.aux_weight`), the preset's optimiser and
    schedule, and mean IoU of "logits"."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)
    names = output_names(model)
    if names:
        model.compile(
            optimizer=preset.make_optimizer(total_steps, steps_per_epoch),
            loss={n: loss for n in names},
            loss_weights={
                n: preset.main_weight if n == "logits" else preset.aux_weight for n in names
            },
            metrics={"logits": [MeanIoU(num_classes)]},
            jit_compile=False,
        )
    else:
        model.compile(
            optimizer=preset.make_optimizer(total_steps, steps_per_epoch),
            loss=loss,
            metrics=[MeanIoU(num_classes)],
            jit_compile=False,
        )
    return model


def compile_classifier(
    model: keras.Model,
    preset: TrainingPreset,
    total_steps: int,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """Cross-entropy on the class logits, the preset's optimiser and schedule, accuracy."""
    model.compile(
        optimizer=preset.make_optimizer(total_steps, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
    return model


def resume_point(folder: str):
    """(model loaded with its optimiser state, epochs done, state) or None."""
    found = last_checkpoint(folder)
    if found is None:
        return None
    path, epoch = found
    model = keras.saving.load_model(path)
    return model, epoch, read_state(folder) or {}


def fit(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    epochs: int,
    folder: str,
    initial_epoch: int = 0,
    state: dict | None = None,
    tensorboard: bool = True,
    verbose: int | str = "auto",
    extra_callbacks: list | None = None,
    precise_bn_batches: int = 8,
) -> keras.callbacks.History:
    """Trains with atomic checkpoints, CSV (appended on resume) and TensorBoard logs.

    `precise_bn_batches` > 0 re-estimates BatchNorm statistics on that many training
    batches before each validation (see `kseg.train.precise_bn`)."""
    os.makedirs(folder, exist_ok=True)
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        *(extra_callbacks or []),
        *([PreciseBN(train_ds, precise_bn_batches)] if precise_bn_batches > 0 else []),
        AtomicCheckpoint(folder, monitor_name(model) if val_ds is not None else None, state=state),
        keras.callbacks.CSVLogger(os.path.join(folder, "log.csv"), append=initial_epoch > 0),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(folder, "tensorboard")))
    return model.fit(
        with_targets(train_ds, model),
        validation_data=None if val_ds is None else with_targets(val_ds, model),
        epochs=epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # the pipeline shuffles
        callbacks=callbacks,
        verbose=verbose,
    )


def main_logits(outputs):
    return outputs["logits"] if isinstance(outputs, dict) else outputs


def evaluate_confusion(model: keras.Model, ds: tf.data.Dataset, num_classes: int) -> np.ndarray:
    """Confusion matrix of the model's argmax over a (image, label) dataset."""

    @tf.function
    def step(images, labels):
        predictions = tf.argmax(main_logits(model(images, training=False)), axis=-1)
        return confusion_matrix(labels, predictions, num_classes)

    total = np.zeros((num_classes, num_classes), np.int64)
    for images, labels in ds:
        total += step(images, labels).numpy()
    return total


def predict_labels(model: keras.Model, image: np.ndarray, multiple: int = 1) -> np.ndarray:
    """Training ids (H x W uint8) for one uint8 image, padded to `multiple` and cropped back."""
    h, w = image.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    x = np.pad(image.astype("float32") / 255.0, ((0, ph), (0, pw), (0, 0)))[None]
    logits = main_logits(model(x, training=False))
    return np.argmax(np.asarray(logits)[0, :h, :w], axis=-1).astype(np.uint8)
