"""The adjoint method on a fixed grid (the fixed-grid methods' "adjoint" gradient).

What torchdiffeq's `odeint_adjoint` does with a fixed-grid method such as `rk4`: the
backward pass integrates the state y, its adjoint a = dL/dy and the parameter gradient
g = dL/dtheta backwards in time,

    dy/dt = f(t, y),   da/dt = -a^T df/dy,   dg/dt = -a^T df/dtheta

(Chen et al. 2018, sec. 2), here with the forward's own Butcher tableau on the forward's
grid, reversed. Nothing of the forward solve is kept but its outputs, and each stage is
one evaluation of the function with its VJP, so the pass holds one evaluation's
activations, the stage derivatives of (y, a) and one parameter-sized running sum: g
never enters the right-hand side, so each stage's share of it is added as it comes, as
in kseg's adaptive adjoint (`kseg.ode.adjoint`).

These are the gradients of the ODE rather than of the grid's arithmetic: the backward
pass recovers y by stepping back over the grid, so on a coarse grid they differ from
back-propagating the steps ("direct", "checkpoint") by the grid's error, and approach
them as the steps grow. They cost what "checkpoint" costs (an evaluation with its VJP
per stage) and keep no stage inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from kseg.ode.adjoint import _Augmented, _combine, custom_gradient_result


def integrate_adjoint(
    solver, func: Callable, y0: list, times: list[float], steps: int, on_backward=None
):
    """`solver.integrate(func, y0, times, steps)` (`solver` a
    `kseg.ode.solvers.FixedGridSolver`, `y0` a list of tensors, `func(t, y)` taking and
    returning such lists), differentiated by the adjoint method on the same grid (module
    docstring). Returns (the states at `times`, steps taken). `on_backward`, if given, is
    called during differentiation with the backward pass's (evaluations, steps, 0): each
    evaluation one of the function with its VJP."""
    grid = solver.grid(times, steps)
    taken = sum(len(interval) for interval in grid)
    n = len(y0)

    @tf.custom_gradient
    def run(*flat_y0):
        states, _ = solver.integrate(func, list(flat_y0), times, steps)
        flat_states = [s for state in states for s in state]

        def grad(*d_flat, variables=None):
            params = [v for v in variables or [] if v.trainable]
            aug = _Augmented(func, list(flat_y0), params)
            d = [tf.zeros_like(s) if g is None else g
                 for s, g in zip(flat_states, d_flat, strict=True)]  # fmt: skip
            d = [d[i * n : (i + 1) * n] for i in range(len(states))]
            a, g = d[-1], [tf.zeros_like(p) for p in params]
            evaluations = 0
            for k in reversed(range(len(grid))):
                y = flat_states[(k + 1) * n : (k + 2) * n]  # restart from the forward's output
                for t, dt in reversed(grid[k]):
                    y, a, g = _step_back(aug, solver.tableau, t, dt, y, a, g)
                    evaluations += solver.evaluations
                a = [ai + di for ai, di in zip(a, d[k], strict=True)]
            if on_backward is not None:
                on_backward((evaluations, taken, 0))
            return custom_gradient_result(a, g, params, variables)

        return flat_states, grad

    flat = run(*y0)
    states = [flat[i * n : (i + 1) * n] for i in range(len(grid) + 1)]
    return states, taken


def _step_back(aug, tableau, t, dt, y: list, a: list, g: list):
    """One step of (y, a) from t + dt back to t: step size -dt, with da/dt's sign folded
    into the weights. Each stage's parameter integrand is added to g as it comes. Returns
    the new (y, a, g)."""
    a_, b, c = tableau
    ky, va = [], []
    for i in range(len(b)):
        # One stage at a time: without this, TF starts the next stage's VJP while this
        # one's parameter gradients are still being added.
        with tf.control_dependencies(g):
            yi = _combine(y, -dt, a_[i], ky) if i else y
            ai = _combine(a, dt, a_[i], va) if i else a
            yi, ai = [tf.identity(v) for v in yi], [tf.identity(v) for v in ai]
        fy, vy, vp = aug(t + (1 - c[i]) * dt, yi, ai, bool(b[i]))
        ky.append(fy)
        va.append(vy)
        if b[i]:
            g = [gj + (dt * b[i]) * pj for gj, pj in zip(g, vp, strict=True)]
    return _combine(y, -dt, b, ky), _combine(a, dt, b, va), g
