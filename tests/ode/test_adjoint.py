"""kseg's adjoint (kseg.ode.adjoint): closed-form gradients through several output times and
across rejected steps, backward attempts no longer than the forward's steps, agreement with
tfp's adjoint and with direct back-propagation, batch norm in training mode."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.ode import ODEBlock, adjoint, dopri, odeint


@pytest.mark.parametrize("gradient", ["adjoint", "aca", "aca_stagewise"])
def test_gradients_through_several_output_times_match_the_closed_form(gradient):
    # y' = theta y: y(t) = y0 exp(theta t). L = sum_i c_i y(t_i), so
    # dL/dy0 = sum_i c_i exp(theta t_i) and dL/dtheta = sum_i c_i t_i y0 exp(theta t_i);
    # the t = 0 term checks that the cotangent of the first output reaches y0. Also for
    # kseg.ode.aca, whose outputs are step ends rather than interpolations.
    theta = tf.Variable(-0.7, dtype=tf.float64)
    y0 = tf.constant([1.3], tf.float64)
    times = [0.0, 0.4, 1.0, 1.5]
    c = np.array([0.5, -2.0, 1.0, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(y0)
        ys = odeint(lambda t, y: theta * y, y0, times, rtol=1e-10, atol=1e-10, gradient=gradient)
        loss = tf.reduce_sum(tf.constant(c) * ys[:, 0])
    g_y0, g_theta = tape.gradient(loss, [y0, theta])
    e = np.exp(-0.7 * np.array(times))
    np.testing.assert_allclose(g_y0.numpy(), [np.sum(c * e)], rtol=1e-7)
    np.testing.assert_allclose(g_theta.numpy(), np.sum(c * np.array(times) * 1.3 * e), rtol=1e-7)


def test_a_function_without_variables_differentiates_its_initial_state():
    y0 = tf.constant([1.0, -2.0], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(y0)
        loss = tf.reduce_sum(odeint(lambda t, y: -t * y, y0, [0.0, 2.0], rtol=1e-9, atol=1e-9))
    # y(2) = y0 exp(-2): dL/dy0 = 1 (the output at t = 0) + exp(-2)
    np.testing.assert_allclose(tape.gradient(loss, y0).numpy(), [1 + np.exp(-2.0)] * 2, rtol=1e-7)


def _conv_func(channels=4, norm=None):
    layers = [keras.layers.Conv2D(channels, 3, padding="same")]
    if norm == "batch":
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.Activation("tanh"), keras.layers.Conv2D(channels, 3, padding="same")]
    return keras.Sequential(layers)


def _block_gradients(block, x, method, steps=None, gradient=None):
    """d sum(sin(block(x))) / d(x, weights) in a tf.function, training=True."""
    block.set_solver(method, steps=steps, gradient=gradient)

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(block(x, training=True)))
        return tape.gradient(loss, [x, *block.trainable_weights])

    return [g.numpy() for g in grads()]


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("norm", [None, "batch"])
def test_matches_tfps_adjoint_and_direct_back_propagation(norm):
    """tfp's adjoint is a second implementation; rk4 with 20 steps back-propagated directly
    a third. With batch norm the backward solve must see batch statistics (training=True)
    as the forward did, though it runs outside the Keras call."""
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 6, 6, 4)).astype("float32"))
    block = ODEBlock(_conv_func(norm=norm), solver={"rtol": 1e-6, "atol": 1e-6})
    block(x)
    ours = _block_gradients(block, x, "dopri5")
    tfp_adjoint = _block_gradients(block, x, "dopri5", gradient="tfp_adjoint")
    direct = _block_gradients(block, x, "rk4", steps=20)
    # the first conv's bias sits before the batch norm, which cancels it: its gradient is 0
    skip = {2} if norm == "batch" else set()
    for i, (a, b, c) in enumerate(zip(ours, tfp_adjoint, direct, strict=True)):
        if i not in skip:
            assert _relative(a, c) < 1e-4, i
            assert _relative(a, b) < 1e-4, i


def test_only_trainable_variables_get_gradients():
    """Batch norm's moving statistics are read in the forward solve; the adjoint returns
    no gradient for them, and every trainable weight gets a nonzero one."""
    keras.utils.set_random_seed(1)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 5, 5, 4)).astype("float32"))
    block = ODEBlock(_conv_func(norm="batch"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(block(x, training=True) ** 2)
    grads = tape.gradient(loss, block.weights)
    for weight, grad in zip(block.weights, grads, strict=True):
        if weight.trainable:
            assert grad is not None and np.any(grad.numpy()), weight.path
        else:
            assert grad is None, weight.path


def test_rejected_backward_steps_leave_no_trace_in_the_parameter_gradient(monkeypatch):
    """Each stage's parameter integrand goes into the gradient as soon as it is computed;
    a rejected step has to take its share out again. y' = theta cos(w t) y^2 has
    1 / y(T) = 1 / y0 - theta sin(w T) / w, so dy(T)/dtheta = y(T)^2 sin(w T) / w and
    dy(T)/dy0 = (y(T) / y0)^2; its backward solve rejects steps even with its attempts
    capped at the forward's accepted steps. Run eagerly,
    so that the loop body's Python runs once per step and the rejections and evaluations
    can be counted; the backward accounting reported to `on_backward` must equal them."""
    calls = {"undo": 0, "evaluations": 0}
    take_step = adjoint._stages
    evaluate = adjoint._Augmented.__call__

    def counting(aug, t, h, y, a, g, sign):
        calls["undo"] += bool(sign < 0)
        return take_step(aug, t, h, y, a, g, sign)

    def counting_evaluations(aug, *args, **kwargs):
        calls["evaluations"] += 1
        return evaluate(aug, *args, **kwargs)

    monkeypatch.setattr(adjoint, "_stages", counting)
    monkeypatch.setattr(adjoint._Augmented, "__call__", counting_evaluations)
    theta, w, T = tf.Variable(0.8, dtype=tf.float64), 6.0, 3.0
    y0 = tf.constant([0.5], tf.float64)
    reported = []
    with tf.GradientTape() as tape:
        tape.watch(y0)
        ys = odeint(
            lambda t, y: theta * tf.cos(w * t) * y * y, y0, [0.0, T], rtol=1e-8, atol=1e-8,
            on_backward=reported.append,
        )  # fmt: skip
        loss = ys[-1, 0]
    g_y0, g_theta = tape.gradient(loss, [y0, theta])
    assert calls["undo"] > 0  # the test needs rejected steps to mean anything
    y_T = 1 / (1 / 0.5 - 0.8 * np.sin(w * T) / w)
    np.testing.assert_allclose(g_y0.numpy(), [(y_T / 0.5) ** 2], rtol=1e-6)
    np.testing.assert_allclose(g_theta.numpy(), y_T**2 * np.sin(w * T) / w, rtol=1e-6)
    (info,) = reported
    assert int(info.rejected) == calls["undo"]
    assert int(info.nfe) == calls["evaluations"]
    # the stage loop ran once per attempt and once per undoing
    assert int(info.accepted) > 0


def test_backward_attempts_are_no_longer_than_the_forward_steps_they_start_in(monkeypatch):
    """The forward's accepted steps, recorded from its step function, and the backward
    solve's attempts, recorded from its stages (eagerly, once per attempt): no attempt from
    t is longer than the forward step [e_j-1, e_j] with e_j-1 < t <= e_j. On
    y' = theta cos(w t) y at 1e-8 the uncapped controller rejected 9 of 56 backward
    attempts, each also undone; capped, at most a couple are rejected, and the gradient is
    the closed form's, dy(T)/dtheta = y(T) sin(w T) / w."""
    forward, attempts = [], []
    take_forward_step = dopri.DormandPrince._step
    take_stages = adjoint._stages

    def forward_step(self, state, *args, **kwargs):
        new_state, diagnostics = take_forward_step(self, state, *args, **kwargs)
        if float(new_state.current_time) > float(state.current_time):
            forward.append(float(new_state.current_time))
        return new_state, diagnostics

    def stages(aug, t, h, y, a, g, sign):
        if float(sign) > 0:
            attempts.append((float(t), float(h)))
        return take_stages(aug, t, h, y, a, g, sign)

    monkeypatch.setattr(dopri.DormandPrince, "_step", forward_step)
    monkeypatch.setattr(adjoint, "_stages", stages)
    theta, w, T = tf.Variable(0.8, dtype=tf.float64), 6.0, 3.0
    y0 = tf.constant([1.5], tf.float64)
    reported = []
    with tf.GradientTape() as tape:
        ys = odeint(
            lambda t, y: theta * tf.cos(w * t) * y, y0, [0.0, T], rtol=1e-8, atol=1e-8,
            on_backward=reported.append,
        )  # fmt: skip
        loss = ys[-1, 0]
    g_theta = tape.gradient(loss, theta)
    y_T = 1.5 * np.exp(0.8 * np.sin(w * T) / w)
    np.testing.assert_allclose(g_theta.numpy(), y_T * np.sin(w * T) / w, rtol=1e-6)
    grid = np.array([0.0, *forward])
    assert len(attempts) > 10 and grid[-1] >= T
    for t, h in attempts:
        j = int(np.searchsorted(grid, t, side="left"))
        assert -h <= grid[j] - grid[j - 1] + 1e-12, (t, h, grid[j - 1], grid[j])
    (info,) = reported
    assert int(info.rejected) <= 2
