"""The fixed grids' "adjoint" gradient (`kseg.ode.grid_adjoint`): the adjoint method on the
forward's grid stepped backwards, against the closed form of a linear ODE and against
back-propagation through the steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.ode import ODEBlock, SolverConfig, odeint
from tests.helpers import two_stream_derivative, two_stream_gradients


def _linear_problem():
    rng = np.random.default_rng(1)
    w = tf.Variable(rng.normal(scale=0.8, size=(3, 3)), dtype=tf.float64)
    y0 = tf.constant(rng.normal(size=(3, 1)), tf.float64)
    c = tf.constant(rng.normal(size=(3, 1)), tf.float64)
    return w, y0, c


def _closed_form_gradients():
    """dL/dy0 and dL/dW of L = c^T expm(W) y0, through TensorFlow's expm."""
    w, y0, c = _linear_problem()
    with tf.GradientTape() as tape:
        tape.watch(y0)
        loss = tf.reduce_sum(c * (tf.linalg.expm(w) @ y0))
    return [g.numpy() for g in tape.gradient(loss, [y0, w])]


def _solver_gradients(method, steps, gradient):
    w, y0, c = _linear_problem()
    with tf.GradientTape() as tape:
        tape.watch(y0)
        y1 = odeint(lambda t, y: w @ y, y0, [0.0, 1.0], method=method,
                    options={"steps": steps}, gradient=gradient, final_only=True)  # fmt: skip
        loss = tf.reduce_sum(c * y1)
    return [g.numpy() for g in tape.gradient(loss, [y0, w])]


def _error(got, want):
    return max(np.abs(g - x).max() / np.abs(x).max() for g, x in zip(got, want, strict=True))


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_adjoint_gradients_converge_to_the_closed_form_at_the_methods_order(method, order):
    """dy/dt = W y: the gradients of c^T y(1) with respect to y0 and W approach those of
    c^T expm(W) y0, and halving the step divides their error by about 2^order."""
    exact = _closed_form_gradients()
    coarse, fine = (_error(_solver_gradients(method, n, "adjoint"), exact) for n in (8, 16))
    assert fine < {1: 0.1, 2: 1e-2, 4: 1e-4}[order]
    assert 2 ** (order - 0.5) < coarse / fine < 2 ** (order + 0.5)


def test_on_a_coarse_grid_the_adjoint_is_the_odes_gradient_not_the_grids():
    """Back-propagating one rk4 step differentiates the step's arithmetic exactly; the
    adjoint on that grid differs from it by the grid's error, and from 32 steps on both
    agree with each other to that error."""
    direct, adjoint = (_solver_gradients("rk4", 1, g) for g in ("direct", "adjoint"))
    assert _error(adjoint, direct) > 1e-3
    direct, adjoint = (_solver_gradients("rk4", 32, g) for g in ("direct", "adjoint"))
    assert _error(adjoint, direct) < 1e-6


def test_adjoint_gradients_of_a_network_with_output_times_match_back_propagation():
    """A two-tensor state (as SegNode's streams), batch norm in training mode, a
    time-dependent derivative and three output times, whose dynamics five rk4 steps
    resolve: the same numbers as back-propagating the unrolled steps, to the grid's error."""
    func, y0, params = two_stream_derivative(scale=0.5)
    adjoint, direct = (
        two_stream_gradients(func, y0, params, "rk4", 5, g) for g in ("adjoint", "direct")
    )
    for got, want in zip(adjoint, direct, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_a_block_takes_the_grid_adjoint_and_saves_it(tmp_path):
    solver = SolverConfig("rk4", steps=2, gradient="adjoint")
    model = keras.Sequential([keras.Input((4,)), ODEBlock(keras.layers.Dense(4), solver=solver)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    block = loaded.layers[0]
    assert block.solver == solver
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(loaded(tf.ones((2, 4)), training=True))
    assert all(g is not None for g in tape.gradient(loss, loaded.trainable_weights))
    # the backward pass's count: 2 steps of 4 evaluations, each with its VJP
    assert (int(block.backward_nfe), int(block.backward_accepted_steps)) == (8, 2)
