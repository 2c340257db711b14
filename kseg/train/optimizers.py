"""RMSprop whose update is TensorFlow's fused RMSProp kernel.

Keras' RMSprop writes each variable's update as about a dozen ops (square, scale, add,
sqrt, divide, three assignments), so a model's training step holds a dozen ops per weight
for the optimiser alone, each traced in Python before the first step and dispatched in
every step. TensorFlow's `ResourceApplyRMSProp` kernel computes the same update in one op,
so the traced step is smaller and its first run starts sooner (bench/RESULTS.md,
"startup").
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras variable or of the tf.Variable under it (for a
    mirrored variable, inside `Strategy.extended.update`, the local copy's)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


@keras.saving.register_keras_serializable(package="kseg")
class RMSprop(keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with the momentum update as one TensorFlow op:

        velocity <- rho * velocity + (1 - rho) * g^2
        momentum <- momentum_factor * momentum + lr * g / sqrt(velocity + epsilon)
        w <- w - momentum

    which is Keras' arithmetic, on Keras' own optimizer variables (the same names, in the
    same order, as `keras.optimizers.RMSprop`'s). Centered RMSprop, RMSprop without
    momentum, sparse gradients and backends other than TensorFlow take Keras' update.
    """

    def update_step(self, gradient, variable, learning_rate):
        if (
            self.centered
            or not self.momentum
            or isinstance(gradient, tf.IndexedSlices)
            or keras.backend.backend() != "tensorflow"
        ):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyRMSProp(
            var=_handle(variable),
            ms=_handle(self._velocities[index]),
            mom=_handle(self._momentums[index]),
            lr=tf.cast(learning_rate, dtype),
            rho=tf.cast(self.rho, dtype),
            momentum=tf.cast(self.momentum, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )
