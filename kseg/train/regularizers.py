"""The coupled weight decay of SGD, RMSprop and Adam as a loss term (`CoupledL2`)."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="kseg")
class CoupledL2(keras.regularizers.Regularizer):
    """The loss term wd / 2 * sum(w^2), whose gradient wd * w is PyTorch's `weight_decay`
    for SGD, RMSprop and Adam (and TF-slim's L2 regulariser at wd / 2).

    The value and gradient of `keras.regularizers.L2(wd / 2)`, written as TensorFlow's
    `L2Loss` (sum(w^2) / 2 in one op, its gradient one product). Keras' L2 writes a
    square, a sum and a product, and their gradient a reshape, a tile and three products,
    each a pass over the weight, for every decayed weight: ops traced before the first
    step and run in every one (bench/RESULTS.md, "startup").
    """

    def __init__(self, weight_decay: float):
        self.weight_decay = float(weight_decay)

    def __call__(self, x):
        # The constant second: TensorFlow's gradient of a product by a scalar it need not
        # differentiate is then one product, not one for each side.
        return tf.nn.l2_loss(x) * self.weight_decay

    def get_config(self):
        return {"weight_decay": self.weight_decay}
