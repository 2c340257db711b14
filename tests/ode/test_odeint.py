"""odeint against closed-form solutions, convergence orders and gradient checks."""

import numpy as np
import pytest
import tensorflow as tf

from kseg.ode import SOLVERS, MaxStepsExceededError, odeint

ADAPTIVE = ["dopri5", "bdf"]
FIXED = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
T = [0.0, 0.5, 1.0, 2.0]


def solve(f, y0, method, steps=64, t=T, **kw):
    opts = None if method in ADAPTIVE else {"steps": steps}

    def run():
        return odeint(f, y0, t, method=method, rtol=1e-7, atol=1e-7, options=opts, **kw)

    # tfp's BDF takes ~7 s a solve eagerly and ~1 s in a graph; the others run eagerly
    return tf.function(run, autograph=False)() if method == "bdf" else run()


# Tolerances: adaptive at rtol=atol=1e-7; fixed grids with 64 steps over [0, 2].
TOL = {"dopri5": 1e-5, "bdf": 1e-4, "euler": 5e-2, "midpoint": 1e-3, "heun": 1e-3, "rk4": 1e-6}


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_exponential_decay(method):
    y0 = tf.constant([1.0, -3.0], tf.float64)
    y = solve(lambda t, y: -0.7 * y, y0, method)
    want = np.exp(-0.7 * np.array(T))[:, None] * y0.numpy()
    np.testing.assert_allclose(y, want, atol=TOL[method] * 3)


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_linear_rotation(method):
    a = tf.constant([[0.0, -1.0], [1.0, 0.0]], tf.float64)
    y = solve(lambda t, y: tf.linalg.matvec(a, y), tf.constant([1.0, 0.0], tf.float64), method)
    want = np.stack([np.cos(T), np.sin(T)], axis=1)
    np.testing.assert_allclose(y, want, atol=TOL[method] * 3)


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_time_dependent_rhs(method):
    # dy/dt = 2t => y = 1 + t^2; dz/dt = cos t => z = sin t
    y = solve(
        lambda t, y: tf.stack([2 * t, tf.cos(t)]) + 0 * y,
        tf.constant([1.0, 0.0], tf.float64),
        method,
    )
    t = np.array(T)
    np.testing.assert_allclose(y, np.stack([1 + t**2, np.sin(t)], 1), atol=TOL[method] * 3)


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_nested_state_of_different_shapes(method):
    y0 = {"a": tf.ones((2, 3), tf.float64), "b": tf.constant([2.0], tf.float64)}
    y = solve(lambda t, y: {"a": -y["a"], "b": y["a"][0, :1] * 0 + y["b"]}, y0, method)
    assert y["a"].shape == (4, 2, 3) and y["b"].shape == (4, 1)
    np.testing.assert_allclose(y["a"][:, 0, 0], np.exp(-np.array(T)), atol=TOL[method] * 3)
    np.testing.assert_allclose(y["b"][:, 0], 2 * np.exp(T), atol=TOL[method] * 30)


@pytest.mark.parametrize(
    "method,gradient",
    [("dopri5", None), ("rk4", "direct"), ("rk4", "checkpoint"), ("euler", "checkpoint")],
)
def test_final_only_is_the_last_state_with_its_gradients(method, gradient):
    """`final_only` gives the trajectory's last state, without the time axis, and the
    same gradients to the initial state and the parameters: y' = -k y, y(2) = y0 e^(-2k)."""
    k = tf.Variable(0.7, dtype=tf.float64)
    y0 = {"a": tf.constant([1.0, -3.0], tf.float64), "b": tf.constant([[2.0]], tf.float64)}

    def run(final_only):
        with tf.GradientTape() as tape:
            tape.watch(y0)
            y = solve(lambda t, y: tf.nest.map_structure(lambda v: -k * v, y), y0, method,
                      gradient=gradient, final_only=final_only)  # fmt: skip
            last = y if final_only else tf.nest.map_structure(lambda v: v[-1], y)
            loss = tf.reduce_sum(last["a"] ** 2) + tf.reduce_sum(last["b"])
        return last, tape.gradient(loss, [y0["a"], y0["b"], k])

    last, grads = run(True)
    want_last, want_grads = run(False)
    assert last["a"].shape == (2,) and last["b"].shape == (1, 1)
    np.testing.assert_allclose(last["a"], y0["a"] * np.exp(-0.7 * 2), atol=TOL[method] * 3)
    for got, want in zip([last["a"], last["b"], *grads], [want_last["a"], want_last["b"],
                                                       *want_grads], strict=True):  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("method,order", sorted(FIXED.items()))
def test_order_of_convergence(method, order):
    y0 = tf.constant([1.0], tf.float64)
    errs = []
    for steps in (8, 16, 32):
        y = odeint(
            lambda t, y: -y + tf.sin(t), y0, [0.0, 1.0], method=method, options={"steps": steps}
        )
        exact = 1.5 * np.exp(-1.0) + 0.5 * (np.sin(1.0) - np.cos(1.0))  # y' = -y + sin t, y0 = 1
        errs.append(abs(float(y[-1, 0]) - exact))
    observed = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(observed, order, atol=0.25)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="dopri5, bdf, euler"):
        odeint(lambda t, y: y, tf.ones(1), [0.0, 1.0], method="rk45")


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_each_call_gets_its_own_solver(method):
    from kseg.ode import get_solver

    first, second = get_solver(method), get_solver(method)
    assert first is not second and type(first) is type(second) is SOLVERS[method]


def test_gradient_mismatch_is_explained():
    with pytest.raises(ValueError, match="'rk4' cannot .* gradient='aca'; it offers direct"):
        odeint(lambda t, y: y, tf.ones(1), [0.0, 1.0], method="rk4", gradient="aca")


def test_max_num_steps_raises_instead_of_hanging():
    with pytest.raises(MaxStepsExceededError, match="max_num_steps=5"):
        odeint(lambda t, y: -50 * y, tf.ones(1), [0.0, 10.0], rtol=1e-9, atol=1e-9, max_num_steps=5)


def test_nfe_is_reported():
    _, info = odeint(
        lambda t, y: -y,
        tf.ones(1),
        [0.0, 1.0],
        options={"steps": 7},
        method="rk4",
        return_info=True,
    )
    assert (int(info.nfe), int(info.accepted), int(info.rejected)) == (28, 7, 0)
    nfe = [
        int(
            odeint(lambda t, y: -y, tf.ones(1), [0.0, 1.0], rtol=tol, atol=tol, return_info=True)[
                1
            ].nfe
        )
        for tol in (1e-3, 1e-6, 1e-9)
    ]
    assert nfe[0] < nfe[1] < nfe[2], nfe  # tighter tolerances take more dopri5 steps


def test_adjoint_gradient_matches_finite_differences_and_direct_backprop():
    rng = np.random.default_rng(0)
    w = tf.Variable(rng.normal(scale=0.5, size=(3, 3)), dtype=tf.float64)
    y0 = tf.constant(rng.normal(size=(3,)), tf.float64)

    def f(t, y):
        return tf.tanh(tf.linalg.matvec(w, y)) + 0.1 * t

    def loss(method, **kw):
        y = odeint(f, y0, [0.0, 1.0], method=method, rtol=1e-8, atol=1e-8, **kw)
        return tf.reduce_sum(y[-1] ** 2)

    with tf.GradientTape() as tape:
        adjoint_loss = loss("dopri5")
    g_adjoint = tape.gradient(adjoint_loss, w).numpy()
    with tf.GradientTape() as tape:
        direct_loss = loss("rk4", options={"steps": 200})
    g_direct = tape.gradient(direct_loss, w).numpy()
    eps, g_fd = 1e-6, np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            w0 = w.numpy()
            w.assign(w0 + np.eye(3)[i][:, None] * np.eye(3)[j] * eps)
            up = float(loss("dopri5"))
            w.assign(w0 - np.eye(3)[i][:, None] * np.eye(3)[j] * eps)
            down = float(loss("dopri5"))
            w.assign(w0)
            g_fd[i, j] = (up - down) / (2 * eps)
    rel = lambda a, b: np.abs(a - b).max() / np.abs(b).max()  # noqa: E731
    assert rel(g_adjoint, g_direct) < 1e-3
    assert rel(g_adjoint, g_fd) < 1e-3
