"""kseg's Dormand-Prince: step counts and states against torchdiffeq, and the accounting."""

import numpy as np
import pytest
import tensorflow as tf

from kseg.ode import odeint
from kseg.ode.dopri import initial_step_size

PROBLEMS = {
    "decay": (lambda t, y: -y, [1.0, 2.0], 1.0),
    "rotation": (lambda t, y: tf.stack([y[1], -y[0]]), [1.0, 0.0], 6.0),
    "time_dependent": (lambda t, y: -2 * t * y, [1.0, 0.5], 2.0),
    "forced": (lambda t, y: -50 * y + 10 * tf.sin(t), [1.0], 1.0),
}

# torchdiffeq 0.2.5, method="dopri5", float64, same problems and tolerances: the number
# of calls of the function and the state at the end time (bench/.peer-venv, see
# bench/setup_peer_venv.sh; the script is in the docstring of test_matches_torchdiffeq).
TORCHDIFFEQ = {
    (1e-3, "decay"): (14, [0.3680697006814889, 0.7361394013629778]),
    (1e-3, "rotation"): (38, [0.9635483407569415, 0.2745193368550968]),
    (1e-3, "time_dependent"): (68, [0.01736771136562389, 0.008683855682811945]),
    (1e-3, "forced"): (134, [0.16611077736767113]),
    (1e-6, "decay"): (32, [0.3678792950842794, 0.7357585901685588]),
    (1e-6, "rotation"): (128, [0.9601677456108401, 0.2794119570223179]),
    (1e-6, "time_dependent"): (110, [0.01831653818127671, 0.009158269090638355]),
    (1e-6, "forced"): (272, [0.166066303662959]),
}


@pytest.mark.parametrize("tol, name", sorted(TORCHDIFFEQ))
def test_matches_torchdiffeq(tol, name):
    """Same first step, error norm and step control as torchdiffeq, so the same steps.

    Reference made with:
        n = [0]
        def g(t, y): n[0] += 1; return f(t, y)
        torchdiffeq.odeint(g, torch.tensor(y0), torch.tensor([0.0, T]), rtol=tol, atol=tol)
    """
    f, y0, end = PROBLEMS[name]
    nfe, state = TORCHDIFFEQ[(tol, name)]
    y, info = odeint(
        f, tf.constant(y0, tf.float64), [0.0, end], rtol=tol, atol=tol, return_info=True
    )
    assert int(info.nfe) == nfe
    # 2 evaluations before the first step (f(t0, y0) and the first-step rule), 6 per step.
    assert int(info.accepted) + int(info.rejected) == (nfe - 2) // 6
    # Both interpolate the end state from the last step, with different interpolants.
    np.testing.assert_allclose(y[-1], state, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(y[-1], state, rtol=1e-5)


@pytest.mark.parametrize(
    "method, options", [("dopri5", None), ("dopri5", {"first_step_size": 0.01}), ("rk4", None)]
)
def test_every_call_of_the_function_is_counted(method, options):
    calls = [0]

    def f(t, y):
        calls[0] += 1
        return -2 * t * y

    _, info = odeint(
        f, tf.ones(3), [0.0, 0.5, 2.0], method=method, options=options, return_info=True
    )
    assert int(info.nfe) == calls[0]


def test_rejected_steps_are_counted():
    # A first step of 1 on y' = -50 y is far too long: it must be rejected and shrunk.
    _, info = odeint(
        lambda t, y: -50 * y,
        tf.ones(1, tf.float64),
        [0.0, 1.0],
        rtol=1e-6,
        atol=1e-6,
        options={"first_step_size": 1.0},
        return_info=True,
    )
    assert int(info.rejected) >= 1
    assert int(info.accepted) + int(info.rejected) == (int(info.nfe) - 1) // 6


def test_initial_step_matches_the_closed_form():
    # y' = -y, y0 = 1, tol 1e-3: scale 2e-3, d0 = d1 = 500, h0 = 0.01, y1 = 0.99,
    # d2 = (0.01 / 2e-3) / 0.01 = 500, h1 = (0.01 / 500) ** (1 / 5) < 100 h0 = 1.
    y0 = tf.constant([1.0], tf.float64)
    h = initial_step_size(lambda t, y: -y, 0.0, y0, -y0, order=4, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(float(h), (0.01 / 500) ** 0.2, rtol=1e-12)


def test_fixed_grid_and_bdf_accounting():
    _, info = odeint(
        lambda t, y: -y,
        tf.ones(1),
        [0.0, 1.0],
        method="heun",
        options={"steps": 5},
        return_info=True,
    )
    assert (int(info.nfe), int(info.accepted), int(info.rejected)) == (10, 5, 0)
    _, info = odeint(lambda t, y: -y, tf.ones(1), [0.0, 1.0], method="bdf", return_info=True)
    assert int(info.nfe) > 0 and int(info.accepted) == int(info.rejected) == -1


def test_accounting_works_in_graph_mode():
    @tf.function
    def solve(y0):
        return odeint(lambda t, y: -2 * t * y, y0, [0.0, 2.0], return_info=True)[1]

    info = solve(tf.constant([1.0, 0.5], tf.float64))
    assert (int(info.nfe), int(info.accepted), int(info.rejected)) == (68, 8, 3)
