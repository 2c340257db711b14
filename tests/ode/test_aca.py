"""Dormand-Prince differentiated by checkpoints of its accepted steps (gradient="aca",
kseg.ode.aca): the forward solve of tfp's loop step for step, agreement with kseg's
adjoint on a conv block with batch norm, backward accounting. Its closed-form gradients
through several output times are tested with the adjoint's (tests/ode/test_adjoint.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.ode import ODEBlock, odeint
from tests.ode.test_adjoint import _block_gradients, _conv_func


def test_forward_takes_the_steps_of_tfps_loop_and_backward_one_per_accepted_step():
    """ACA runs its own Dormand-Prince loop with kseg.ode.dopri's step control: on a problem
    with rejections it must attempt, accept and reject exactly as the tfp-based solve does,
    and its backward pass recomputes each accepted step once (six evaluations each)."""
    theta, w = tf.Variable(0.8, dtype=tf.float64), 6.0
    y0 = tf.constant([1.5, -0.5], tf.float64)
    results = {}
    for gradient in ("adjoint", "aca"):
        backward = []
        with tf.GradientTape() as tape:
            ys, info = odeint(
                lambda t, y: theta * tf.cos(w * t) * y, y0, [0.0, 1.0, 3.0], rtol=1e-6,
                atol=1e-6, gradient=gradient, return_info=True, on_backward=backward.append,
            )  # fmt: skip
            loss = tf.reduce_sum(ys[-1])
        grad = tape.gradient(loss, theta)
        results[gradient] = (ys.numpy(), [int(v) for v in info], backward[0], float(grad))
    (ys_a, info_a, _, grad_a), (ys_c, info_c, back_c, grad_c) = results.values()
    assert info_c == info_a and info_a[2] > 0  # same evaluations, accepted, rejected
    # tfp interpolates at t = 1, ACA ends a step there: both within the tolerance.
    exact_ys = 1.5 * np.exp(0.8 * np.sin(w * np.array([0.0, 1.0, 3.0])) / w)[:, None]
    exact_ys = exact_ys * np.array([1.0, -1 / 3])
    np.testing.assert_allclose(ys_c, exact_ys, rtol=2e-5)
    np.testing.assert_allclose(ys_a, exact_ys, rtol=2e-5)
    assert [int(v) for v in back_c] == [6 * info_c[1], info_c[1], 0]
    # dy(T)/dtheta = y(T) sin(w T) / w, summed over the two components
    exact = float(np.sum(ys_c[-1]) * np.sin(w * 3.0) / w)
    # aca's is the discrete solve's gradient: within 1.2e-4 here, 9e-8 at tolerance 1e-8
    assert grad_c == pytest.approx(exact, rel=5e-4)
    assert grad_a == pytest.approx(exact, rel=5e-4)


@pytest.mark.parametrize("gradient", ["adjoint", "aca"])
def test_a_given_first_step_is_the_first_attempt(gradient):
    """`first_step_size` replaces Hairer's rule in tfp's loop (the adjoint's forward) and in
    ACA's: from 1e-4, with a step growing at most 10x per step, dy/dt = -y needs at least
    three more accepted steps to reach the step sizes Hairer's rule starts near, and no
    trial evaluation to choose it."""
    y0 = tf.constant([1.0, 2.0], tf.float64)

    def solve(options):
        ys, info = odeint(lambda t, y: -y, y0, [0.0, 1.0], gradient=gradient,
                          options=options, return_info=True)  # fmt: skip
        np.testing.assert_allclose(ys[-1], np.exp(-1.0) * y0.numpy(), rtol=1e-3)
        return [int(v) for v in info]

    (nfe, accepted, rejected), hairer = solve({"first_step_size": 1e-4}), solve(None)
    assert accepted >= hairer[1] + 3
    assert nfe == 1 + 6 * (accepted + rejected) and hairer[0] == 2 + 6 * sum(hairer[1:])


def _conv_block():
    return ODEBlock(_conv_func(norm="batch"), solver={"rtol": 1e-6, "atol": 1e-6})


def test_block_gradients_match_kseg_adjoint_with_batch_norm_and_count_the_backward_pass():
    """On a conv block with batch norm in training mode, aca's gradients are those of the
    discrete solve, the adjoint's those of the exact flow: at 1e-6 both must agree with
    each other. aca_stagewise back-propagates the same discrete solve one stage at a time:
    the same gradients to float32 rounding. The block records each backward pass's
    accounting."""
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 6, 6, 4)).astype("float32"))
    block = _conv_block()
    block(x)
    grads = {}
    for gradient in ("adjoint", "aca", "aca_stagewise"):
        grads[gradient] = _block_gradients(block, x, "dopri5", gradient=gradient)
        counters = (block.backward_nfe, block.backward_accepted_steps)
        backward = [int(v.numpy()) for v in (*counters, block.backward_rejected_steps)]
        if gradient.startswith("aca"):
            accepted = int(block.accepted_steps.numpy())
            per_step = 11 if gradient == "aca_stagewise" else 6  # 5 evaluations without VJP
            assert backward == [per_step * accepted, accepted, 0]
        else:
            # kseg's adjoint: 7 evaluations per attempt, 6 more to undo each rejection
            assert backward[0] == 7 * (backward[1] + backward[2]) + 6 * backward[2] > 0
    for i, (a, b) in enumerate(zip(grads["adjoint"], grads["aca"], strict=True)):
        if i == 2:  # the first conv's bias sits before the batch norm: its gradient is 0
            continue
        assert np.abs(a - b).max() < 1e-4 * np.abs(a).max(), i
    for i, (a, b) in enumerate(zip(grads["aca"], grads["aca_stagewise"], strict=True)):
        if i != 2:  # (the zero bias gradient again)
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * np.abs(a).max())


def test_gradient_setting_survives_a_keras_round_trip_and_old_files_load(tmp_path):
    keras.utils.set_random_seed(1)
    block = _conv_block()
    block.set_solver(gradient="aca")
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, block(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[-1].gradient == "aca"
    # A file saved before the backward counters existed holds three variables.
    fresh = _conv_block()
    fresh(np.zeros((1, 6, 6, 4), "float32"))
    fresh.load_own_variables({"0": np.float32(14), "1": np.float32(2), "2": np.float32(1)})
    assert [float(w.numpy()) for w in (fresh.nfe, fresh.accepted_steps, fresh.rejected_steps)] == [
        14,
        2,
        1,
    ]
    with pytest.raises(ValueError, match="it offers direct"):
        fresh.set_solver("rk4", gradient="aca")
