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

from kseg.ode.adjoint import _Augmented, _combine, by_time, cotangents, custom_gradient_result


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
            d = by_time(cotangents(flat_states, d_flat), n)
            a, g = d[-1], [tf.zeros_like(p) for p in params]
            evaluations = 0
            for k in reversed(range(len(grid))):
                y = states[k + 1]  # restart from the forward's output
                for t, dt in reversed(grid[k]):
                    y, a, g = _step_back(aug, solver.tableau, t, dt, y, a, g)
                    evaluations += solver.evaluations
                a = [ai + di for ai, di in zip(a, d[k], strict=True)]
            if on_backward is not None:
                on_backward((evaluations, taken, 0))
            return custom_gradient_result(a, g, params, variables)

        return flat_states, grad

    return by_time(run(*y0), n), taken


def _step_back(aug, tableau, t, dt, y: list, a: list, g: list):
    """One step of (y, a) from t + dt back to t: step size -dt, with da/dt's sign folded
    into the weights. Each stage's parameter integrand is added to g as it comes. Returns
    the new (y, a, g).

    A stage's values are kept only while a later stage reads them: the ones no later
    stage reads are folded into the step's weighted sum before the next evaluation
    starts, so that an evaluation's VJP runs beside the fewest state-sized tensors (with
    torchdiffeq's rk4, the 3/8 rule, at most two stages' values; summed at the end, the
    products of each stage's weight would be formed as soon as the stage was, and held
    through the later stages' VJPs)."""
    a_, b, c = tableau
    kept = {}  # stage j -> (f, a^T df/dy) at stage j, while a later stage reads them
    done = None  # sum of b_j times the values of the stages no later stage reads
    for i in range(len(b)):
        # One stage at a time: without this, TF starts the next stage's VJP while this
        # one's parameter gradients are still being added.
        with tf.control_dependencies(g):
            yi, ai = y, a
            if i:
                ws = [a_[i][j] for j in kept]
                yi = _combine(y, -dt, ws, [kept[j][0] for j in kept])
                ai = _combine(a, dt, ws, [kept[j][1] for j in kept])
            unread = [j for j in kept if not any(row[j] for row in a_[i + 1 :])]
            done = _fold(done, b, {j: kept.pop(j) for j in unread})
        with tf.control_dependencies(done or []):
            yi, ai = [tf.identity(v) for v in yi], [tf.identity(v) for v in ai]
        fy, vy, vp = aug(t + (1 - c[i]) * dt, yi, ai, bool(b[i]))
        kept[i] = (fy, vy)
        if b[i]:
            g = [gj + (dt * b[i]) * pj for gj, pj in zip(g, vp, strict=True)]
    with tf.control_dependencies(g):
        done = _fold(done, b, kept)
    if done is None:  # no stage has a weight
        return y, a, g
    n = len(y)
    return (
        [yj - dt * dj for yj, dj in zip(y, done[:n], strict=True)],
        [aj + dt * dj for aj, dj in zip(a, done[n:], strict=True)],
        g,
    )


def _fold(done: list | None, b, stages: dict) -> list | None:
    """`done` plus the b-weighted sum of `stages` (j -> (f, a^T df/dy)), the two parts'
    tensors in one list; None while nothing has a weight."""
    for j, (fy, vy) in stages.items():
        if b[j]:
            terms = [b[j] * v for v in [*fy, *vy]]
            done = terms if done is None else [d + v for d, v in zip(done, terms, strict=True)]
    return done
