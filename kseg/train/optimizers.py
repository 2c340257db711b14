"""Keras' RMSprop, SGD, Adam and AdamW with each weight's update as one TensorFlow op.

Keras writes each weight's update as several ops (casts, products, sums, square roots,
two or three assignments), so a model's training step holds about a dozen ops per weight
for the optimiser alone: each is traced in Python before the first step, and each passes
over the weight-sized tensors in every step. TensorFlow's training kernels
(`ResourceApplyRMSProp`, `ResourceApplyKerasMomentum`, `ResourceApplyAdam`) compute the
same arithmetic, on the same variables, in one op per weight (bench/RESULTS.md,
"startup" and "segnode_memory").

Each class here is a subclass of Keras' optimiser with the same name, arguments, variables
and saved config; only `update_step` differs. What the kernels do not cover takes Keras'
own update: sparse gradients (`tf.IndexedSlices`), backends other than TensorFlow, and
each class's options listed in its docstring.
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


def _fusable(gradient) -> bool:
    return not isinstance(gradient, tf.IndexedSlices) and keras.backend.backend() == "tensorflow"


class _ScalarsOncePerStep:
    """Makes each scalar input of the fused kernels (the learning rate and the
    hyper-parameters in the weights' dtype, Adam's bias corrections) once per update of
    all weights, where writing it in `update_step` would make it again for every weight:
    fewer ops in a traced training step, so less to trace and to set up before the first
    one (bench/RESULTS.md, "startup"). One per dtype and device of the weights, so each
    copy of a mirrored weight takes its own device's. Outside `_backend_update_step`
    (`update_step` called alone) each call makes its own."""

    _step_scalars = None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        object.__setattr__(self, "_step_scalars", {})  # not state for Keras to track
        try:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            object.__setattr__(self, "_step_scalars", None)

    def _scalar(self, name: str, make, variable):
        """`make()`, made once per update for `variable`'s dtype and device."""
        if self._step_scalars is None:
            return make()
        key = (name, variable.dtype, variable.device)
        if key not in self._step_scalars:
            self._step_scalars[key] = make()
        return self._step_scalars[key]

    def _cast(self, name: str, variable):
        """The hyper-parameter `name` cast to `variable`'s dtype, once per update."""
        return self._scalar(name, lambda: tf.cast(getattr(self, name), variable.dtype), variable)

    def _lr_in_dtype(self, learning_rate, variable):
        """This update's learning rate (a variable read when it is constant) in
        `variable`'s dtype, once per update."""
        return self._scalar("lr", lambda: tf.cast(learning_rate, variable.dtype), variable)


@keras.saving.register_keras_serializable(package="kseg")
class RMSprop(_ScalarsOncePerStep, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with the momentum update as one TensorFlow op:

        velocity <- rho * velocity + (1 - rho) * g^2
        momentum <- momentum_factor * momentum + lr * g / sqrt(velocity + epsilon)
        w <- w - momentum

    which is Keras' arithmetic, on Keras' own optimizer variables (the same names, in the
    same order, as `keras.optimizers.RMSprop`'s). Centered RMSprop and RMSprop without
    momentum take Keras' update.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.centered or not self.momentum or not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyRMSProp(
            var=_handle(variable),
            ms=_handle(self._velocities[index]),
            mom=_handle(self._momentums[index]),
            lr=self._lr_in_dtype(learning_rate, variable),
            rho=self._cast("rho", variable),
            momentum=self._cast("momentum", variable),
            epsilon=self._cast("epsilon", variable),
            grad=tf.cast(gradient, dtype),
        )


@keras.saving.register_keras_serializable(package="kseg")
class SGD(_ScalarsOncePerStep, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with the momentum update as one TensorFlow op:

        m <- momentum * m - lr * g
        w <- w + m                          (w <- w + momentum * m - lr * g with nesterov)

    Keras' arithmetic on Keras' momentum variables. SGD without momentum takes Keras'
    update (one op already).
    """

    def update_step(self, gradient, variable, learning_rate):
        if not self.momentum or not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable),
            accum=_handle(self.momentums[self._get_variable_index(variable)]),
            lr=self._lr_in_dtype(learning_rate, variable),
            grad=tf.cast(gradient, dtype),
            momentum=self._cast("momentum", variable),
            use_nesterov=self.nesterov,
        )


class _FusedAdamUpdate(_ScalarsOncePerStep):
    """Adam's update as one TensorFlow op, for `Adam` and `AdamW` (whose decoupled weight
    decay Keras applies before the update):

        m <- m + (1 - beta_1) (g - m),   v <- v + (1 - beta_2) (g^2 - v)
        w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

    at step t = iterations + 1, Keras' arithmetic on Keras' moment variables. AMSGrad takes
    Keras' update."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        beta_1, beta_2 = self._cast("beta_1", variable), self._cast("beta_2", variable)
        step = self._scalar("step", lambda: tf.cast(self.iterations + 1, dtype), variable)
        beta1_power = self._scalar("beta1_power", lambda: tf.pow(beta_1, step), variable)
        beta2_power = self._scalar("beta2_power", lambda: tf.pow(beta_2, step), variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=beta1_power,
            beta2_power=beta2_power,
            lr=self._lr_in_dtype(learning_rate, variable),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=self._cast("epsilon", variable),
            grad=tf.cast(gradient, dtype),
        )


@keras.saving.register_keras_serializable(package="kseg")
class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with each weight's update as one TensorFlow op
    (`_FusedAdamUpdate`)."""


@keras.saving.register_keras_serializable(package="kseg")
class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with each weight's update as one TensorFlow op
    (`_FusedAdamUpdate`); the decoupled weight decay is Keras' own step before it."""
