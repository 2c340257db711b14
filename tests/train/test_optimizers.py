"""kseg's RMSprop (TensorFlow's fused kernel) against Keras' RMSprop, the second
implementation of the same arithmetic."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.train.optimizers import RMSprop
from kseg.train.schedules import PolyDecay


def _model() -> keras.Model:
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))


def _fit(optimizer, steps: int = 4) -> tuple[keras.Model, list[np.ndarray]]:
    keras.utils.set_random_seed(0)
    model = _model()
    model.compile(optimizer, "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 6, 6, 2)), rng.normal(size=(4, 2))
    for _ in range(steps):
        model.train_on_batch(x.astype("float32"), y.astype("float32"))
    return model, [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("momentum, centered", [(0.9, False), (0.0, False), (0.9, True)])
def test_equals_keras_rmsprop_under_a_decaying_rate(momentum, centered):
    """ContextNet's settings (rho 0.9, momentum 0.9, epsilon 1, a poly rate) take the fused
    kernel; without momentum or centered, Keras' own update. Weights and optimiser state
    equal Keras' after four compiled steps."""
    kwargs = dict(rho=0.9, momentum=momentum, epsilon=1.0, centered=centered)
    ours, ours_state = _fit(RMSprop(PolyDecay(0.045, 10, power=0.98), **kwargs))
    keras_, keras_state = _fit(keras.optimizers.RMSprop(PolyDecay(0.045, 10, power=0.98), **kwargs))
    for a, b in zip(ours.weights, keras_.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    for a, b in zip(ours_state, keras_state, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(0)  # the initial weights of `_fit`'s model
    initial = [w.numpy() for w in _model().trainable_weights]
    trained = [w.numpy() for w in ours.trainable_weights]
    # every weight moved: the comparison above is not of untouched weights
    assert all(not np.allclose(w, w0) for w, w0 in zip(trained, initial, strict=True))


def test_one_fused_op_per_weight_and_keras_variable_names():
    """The traced step updates each weight with one ResourceApplyRMSProp op, and the
    optimiser's variables are Keras' (the same names in the same order)."""
    optimizer, reference = RMSprop(0.01, momentum=0.9), keras.optimizers.RMSprop(0.01, momentum=0.9)
    model = _model()
    optimizer.build(model.trainable_variables)
    reference.build(model.trainable_variables)
    names = [v.path.split("/", 1)[1] for v in optimizer.variables]  # after the optimiser's
    assert names == [v.path.split("/", 1)[1] for v in reference.variables]
    assert sum(n.endswith("_momentum") for n in names) == 6
    grads = [tf.ones_like(v) for v in model.trainable_variables]

    def ops_of(opt) -> list[str]:
        fn = tf.function(lambda: opt.apply(grads, model.trainable_variables))
        return [op.type for op in fn.get_concrete_function().graph.get_operations()]

    ours, theirs = ops_of(optimizer), ops_of(reference)
    assert ours.count("ResourceApplyRMSProp") == len(model.trainable_variables) == 6
    assert "ResourceApplyRMSProp" not in theirs and len(ours) < len(theirs)
