"""Models built under a mixed-precision policy (the recipes' `--mixed-precision`): every
model gives float32 logits, and ODE blocks solve in float32 around a half-precision
derivative, with every gradient method."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.models import create_model
from kseg.ode import ODEBlock, SolverConfig
from tests.tiny_models import TINY


@pytest.fixture
def mixed_bfloat16():
    before = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_gives_float32_logits(name, mixed_bfloat16):
    """Losses, arg-maxes and metrics read the logits: in bfloat16 a logit near 10 is
    rounded to a multiple of 1/16."""
    model = create_model(name, num_classes=5, **TINY[name][0])
    assert model.compute_dtype == "bfloat16"
    assert [o.dtype for o in model.outputs] == ["float32"] * len(model.outputs)


SOLVERS = [
    SolverConfig(),  # dopri5, kseg's adjoint
    SolverConfig(gradient="aca"),
    SolverConfig(gradient="aca_stagewise"),
    SolverConfig(gradient="tfp_adjoint"),
    SolverConfig("rk4", steps=2),
    SolverConfig("rk4", steps=2, gradient="checkpoint"),
    SolverConfig("rk4", steps=2, gradient="adjoint"),  # SegNode's default
]


def _block_gradients(solver, weights=None):
    """A conv-tanh derivative on a 2x6x6x3 state: the block's output dtype, and the
    gradients of a loss to the input and the weights."""
    func = keras.Sequential([keras.layers.Conv2D(3, 3, padding="same", activation="tanh")])
    block = ODEBlock(func, solver=solver)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 6, 3)), tf.float32)
    block(x)
    if weights is not None:
        block.set_weights(weights)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = block(x, training=True)
        loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)))
    grads = tape.gradient(loss, [x, *block.trainable_weights])
    return y.dtype, [g.numpy() for g in grads], block.get_weights()


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: f"{s.method}-{s.gradient}")
def test_an_ode_block_trains_under_mixed_precision(solver):
    """The same gradients as in float32, to bfloat16's precision. Before the block solved
    in float32, kseg's adjoint (the default) and tfp's raised a dtype error here."""
    _, want, weights = _block_gradients(solver)
    before = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        dtype, got, _ = _block_gradients(solver, weights)
    finally:
        keras.mixed_precision.set_global_policy(before)
    assert dtype == tf.bfloat16  # the layer's compute dtype, as any Keras layer's output
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=0.03 * np.abs(w).max())
