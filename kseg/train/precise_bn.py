"""Precise BatchNorm statistics: re-estimate the moving means and variances before each
validation (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", section 3; pycls and
detectron2 call it PreciseBN).

The moving averages (momentum 0.99) mix statistics of weights from the last ~100 steps.
While the weights still move fast, as at a high learning rate or in a short run, those
averages no longer describe the current network and inference collapses: on the demo, a
ContextNet at 0.71 mIoU with batch statistics scored 0.09 with its moving averages. This
callback replaces them, after the last training step of each epoch and so before
validation and the checkpoint, with the plain average over `batches` training batches
under the current weights; for a batch norm that runs several times a forward pass, as
one in an ODE block's derivative does at every evaluation, the average over every call.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kseg.layers.norm import averaging_calls


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

    kseg's batch norms average their training calls' statistics in the graph
    (`kseg.layers.norm.averaging_calls`), over every call of every batch: a batch norm in
    an ODE block's derivative is called at each evaluation of the solve, at states that
    change with t, and inference applies one set of statistics to all of them. Others
    (Keras' own layer) run with momentum 0, so that each batch leaves its statistics in
    the moving variables, summed here and averaged at the end. `forward` is
    `training_forward(model, strategy)`, made here if not given; it reads this state when
    traced, and is only called within it. With a `strategy` the batches are distributed
    ones, each replica runs its share and updates its own copy of the statistics, and the
    copies' average is assigned to all of them (under a multi-worker strategy: of this
    worker's replicas). Returns the number of batches used."""
    layers = batch_norm_layers(model)
    forward = forward or training_forward(model, strategy)
    momenta = [layer.momentum for layer in layers]
    used, sums, keras_path, counted = 0, None, [], []
    try:
        for layer in layers:
            layer.momentum = 0.0
        with averaging_calls(layers, strategy) as counters:
            for used, batch in enumerate(images, start=1):
                forward(batch[0] if isinstance(batch, tuple | list) else batch)
                if used == 1:  # a counter still at 0: the layer read its momentum
                    for layer in layers:
                        done = layer in counters and float(counters[layer].numpy()) > 0
                        (counted if done else keras_path).append(layer)
                values = [_replica_mean(v, strategy) for v in _moving(keras_path)]
                if sums is not None:
                    values = [a + b for a, b in zip(sums, values, strict=True)]
                sums = values
                if used >= batches:
                    break
        for v, total in zip(_moving(keras_path), sums or [], strict=False):
            v.assign((total / used).astype(v.dtype))
        if strategy is not None:  # each replica averaged its own calls
            for v in _moving(counted):
                v.assign(_replica_mean(v, strategy).astype(v.dtype))
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return used


def _moving(layers: list) -> list:
    return [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]


def _replica_mean(v, strategy: tf.distribute.Strategy | None) -> np.ndarray:
    """`v`'s value, averaged over this machine's replicas under a strategy: in a training
    call each replica updates its own copy of a moving statistic (Keras' variables have
    no aggregation), and reading the variable gives the first replica's."""
    if strategy is None:
        return np.asarray(v.numpy(), np.float64)
    copies = strategy.experimental_local_results(getattr(v, "value", v))
    return np.mean([np.asarray(c.numpy(), np.float64) for c in copies], axis=0)


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
