"""Precise BatchNorm statistics: re-estimate the moving means and variances before each
validation (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", section 3; pycls and
detectron2 call it PreciseBN).

The moving averages (momentum 0.99) mix statistics of weights from the last ~100 steps.
While the weights still move fast, as at a high learning rate or in a short run, those
averages no longer describe the current network and inference collapses: on the demo, a
ContextNet at 0.71 mIoU with batch statistics scored 0.09 with its moving averages. This
callback replaces them, after the last training step of each epoch and so before
validation and the checkpoint, with the plain average over `batches` training batches
under the current weights.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def training_forward(model: keras.Model, strategy: tf.distribute.Strategy | None = None):
    """The model's training-mode call on a batch as one traced function, through
    `strategy.run` with a strategy (whose batches are distributed ones): what
    `recompute_batch_norm_statistics` runs. Traced once and kept (`PreciseBN` keeps it
    across epochs): run eagerly, every op of the model is dispatched one by one, and
    `strategy.run` warns of that overhead at every epoch."""

    def forward(x):
        model(x, training=True)  # only the moving statistics' updates are kept

    if strategy is None:
        return tf.function(forward)
    return tf.function(lambda x: strategy.run(forward, args=(x,)))


def recompute_batch_norm_statistics(
    model: keras.Model,
    images,
    batches: int,
    strategy: tf.distribute.Strategy | None = None,
    forward=None,
) -> int:
    """Sets every BatchNormalization's moving statistics to their average over up to
    `batches` batches of `images` (an iterator of image batches or (image, label) pairs).

    Each batch runs with the layers' momentum at 0, so that it leaves its own statistics
    in the moving variables; they are summed here, and their average assigned at the end.
    `forward` is `training_forward(model, strategy)`, made here if not given; it reads the
    momentum when traced, and is only called while the momentum is 0. With a `strategy`
    the batches are distributed ones and each is run on every replica; the replicas'
    updates of the moving statistics are averaged (a mirrored variable's update in
    replica context), so every replica ends with the same statistics. Returns the number
    of batches used."""
    layers = batch_norm_layers(model)
    moving = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    forward = forward or training_forward(model, strategy)
    momenta = [layer.momentum for layer in layers]
    sums, used = None, 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        for used, batch in enumerate(images, start=1):
            forward(batch[0] if isinstance(batch, tuple | list) else batch)
            values = [np.asarray(v.numpy(), np.float64) for v in moving]
            sums = values if sums is None else [s + v for s, v in zip(sums, values, strict=True)]
            if used >= batches:
                break
        for v, total in zip(moving, sums or [], strict=False):
            v.assign((total / used).astype(v.dtype))
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return used


class PreciseBN(keras.callbacks.Callback):
    """Re-estimates BatchNorm statistics after the last training step of each epoch.

    Args:
        dataset: the training `tf.data.Dataset` (or any iterable of batches).
        batches: batches to average over.
    """

    def __init__(self, dataset, batches: int = 8):
        super().__init__()
        self.dataset, self.batches = dataset, batches
        self._iterator = self._forward = None

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps")
        if not steps or batch + 1 != steps or not batch_norm_layers(self.model):
            return
        strategy = self.model.distribute_strategy
        # Keras keeps the strategy a model was built under (None: the default one).
        distributed = getattr(self.model, "_distribute_strategy", None) is not None
        if self._iterator is None:
            dataset = self.dataset.repeat()
            if distributed:
                dataset = strategy.experimental_distribute_dataset(dataset)
            self._iterator = iter(dataset)
            self._forward = training_forward(self.model, strategy if distributed else None)
        recompute_batch_norm_statistics(
            self.model,
            self._iterator,
            self.batches,
            strategy if distributed else None,
            self._forward,
        )
