"""The fixed grids' "checkpoint" gradient (each evaluation of the function run again in the
backward pass from its stored input, `kseg.ode.checkpoint`) against back-propagation
through the same steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.ode import ODEBlock, SolverConfig
from tests.helpers import two_stream_derivative, two_stream_gradients


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_checkpoint_gradients_equal_direct_back_propagation(method):
    """A two-tensor state (as SegNode's streams), batch norm in training mode, three
    output times: the same numbers as back-propagating the unrolled steps."""
    func, y0, params = two_stream_derivative()
    checkpoint, direct = (
        two_stream_gradients(func, y0, params, method, 5, g) for g in ("checkpoint", "direct")
    )
    for got, want in zip(checkpoint, direct, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_a_block_takes_the_checkpoint_gradient_and_saves_it(tmp_path):
    block = ODEBlock(
        keras.layers.Dense(4), solver=SolverConfig("rk4", steps=2, gradient="checkpoint")
    )
    model = keras.Sequential([keras.Input((4,)), block])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[0].solver == SolverConfig("rk4", steps=2, gradient="checkpoint")
    block = loaded.layers[0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(loaded(tf.ones((2, 4)), training=True))
    assert all(g is not None for g in tape.gradient(loss, loaded.trainable_weights))
    # the backward pass's count: each of the 2 x 4 evaluations again, with its VJP
    assert (int(block.backward_nfe), int(block.backward_accepted_steps)) == (8, 2)
    with pytest.raises(ValueError, match="'dopri5' cannot .* gradient='checkpoint'"):
        SolverConfig("dopri5", gradient="checkpoint")
