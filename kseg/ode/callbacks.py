"""Keras callback that logs the step accounting of every ODEBlock in a model."""

from __future__ import annotations

import keras

from kseg.ode.block import ODEBlock


def ode_blocks(model: keras.Model) -> list[ODEBlock]:
    """Every ODEBlock in `model`, nested ones included."""
    return [
        layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, ODEBlock)
    ]


COUNTS = {"nfe": "nfe", "accepted": "accepted_steps", "rejected": "rejected_steps"}


class NFELogger(keras.callbacks.Callback):
    """Adds `{block}_nfe`, `{block}_accepted` and `{block}_rejected` to the logs: the last
    batch's function evaluations and steps, and at the epoch end their epoch means.

    Place it before other callbacks (CSVLogger, TensorBoard) so they see the values.

    Example:
        >>> model.fit(ds, callbacks=[NFELogger(), keras.callbacks.CSVLogger("log.csv")])
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._sums, self._count = {}, 0

    def _record(self, logs):
        if logs is None:
            return
        for block in ode_blocks(self.model):
            for suffix, weight in COUNTS.items():
                key = f"{block.name}_{suffix}"
                value = float(getattr(block, weight).numpy())
                logs[key] = value
                self._sums[key] = self._sums.get(key, 0.0) + value

    def on_train_batch_end(self, batch, logs=None):
        self._count += 1
        self._record(logs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._count:
            for key, total in self._sums.items():
                logs[key] = total / self._count
