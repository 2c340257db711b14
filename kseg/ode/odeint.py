"""`odeint`: integrate dy/dt = func(t, y) and return the states at the requested times."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from kseg.ode.solvers import AdaptiveSolver, Func, get_solver

DEFAULT_MAX_NUM_STEPS = 1000


class MaxStepsExceededError(RuntimeError):
    """An adaptive solve needed more steps than `max_num_steps` allows."""


class SolveInfo(NamedTuple):
    """Step accounting of one solve: function evaluations (exact, a scalar int32 tensor).

    A NamedTuple, so a `tf.function` can return it.

    tfp's solvers report evaluations but not the accepted/rejected split; for dopri5 one
    attempted step costs 6 evaluations, so `nfe / 6` bounds the attempted steps.
    """

    nfe: tf.Tensor


def _static_times(t) -> list[float]:
    value = tf.get_static_value(tf.convert_to_tensor(t))
    if value is None:
        raise ValueError(
            "fixed-grid methods need the output times known when the graph is built "
            "(a list or a constant tensor); use an adaptive method for computed times"
        )
    return [float(v) for v in np.atleast_1d(value)]


def odeint(
    func: Func,
    y0,
    t: Sequence[float] | tf.Tensor,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-3,
    adjoint: bool | None = None,
    max_num_steps: int | None = DEFAULT_MAX_NUM_STEPS,
    options: dict | None = None,
    return_info: bool = False,
):
    """Integrates dy/dt = func(t, y) from t[0] and returns the states at every time in t.

    Args:
        func: derivative, called as `func(t, y)` with `y` of the same structure as `y0`.
        y0: initial state: a tensor or a nested structure of tensors of any shapes.
        t: 1-D increasing times; the result has a leading axis of len(t) with y0 first.
        method: a name from `kseg.ode.SOLVERS` ("dopri5", "bdf", "euler", "midpoint",
            "heun", "rk4").
        rtol, atol: tolerances of the adaptive methods.
        adjoint: None takes the method's own gradient: the adjoint sensitivity method for
            the adaptive (tfp) methods, back-propagation through the steps for fixed-grid
            ones. A value the method cannot honour raises ValueError.
        max_num_steps: adaptive methods stop with `MaxStepsExceededError` beyond this;
            None means unbounded.
        options: for fixed-grid methods `{"steps": N}` (default 10) or `{"step_size": h}`;
            for adaptive ones, extra keyword arguments of the tfp solver.
        return_info: also return a `SolveInfo` with the function evaluations.

    Returns:
        The states (structure of y0, each with a leading time axis), and with
        `return_info` a tuple (states, SolveInfo).
    """
    solver = get_solver(method)
    options = dict(options or {})
    y0 = tf.nest.map_structure(tf.convert_to_tensor, y0)
    if adjoint is not None and adjoint != solver.adaptive:
        raise ValueError(
            f"{method!r} cannot be differentiated with adjoint={adjoint}: the adaptive "
            "methods (dopri5, bdf) always use tfp's adjoint, the fixed-grid ones "
            "(euler, midpoint, heun, rk4) back-propagate through their steps"
        )
    if isinstance(solver, AdaptiveSolver):
        states, nfe = _solve_adaptive(solver, func, y0, t, rtol, atol, max_num_steps, options)
    else:
        times = _static_times(t)
        if any(b <= a for a, b in zip(times[:-1], times[1:], strict=True)):
            raise ValueError(f"times must be strictly increasing, got {times}")
        steps = options.pop("steps", None)
        if "step_size" in options:
            steps = max(1, round((times[-1] - times[0]) / options.pop("step_size")))
        if options:
            raise ValueError(f"unknown options for {method!r}: {sorted(options)}")
        steps = 10 if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        wrapped = lambda s, y: func(tf.constant(s, dtype=_dtype(y0)), y)  # noqa: E731
        trajectory, n = solver.integrate(wrapped, y0, times, steps)
        states = tf.nest.map_structure(lambda *ys: tf.stack(ys), *trajectory)
        nfe = tf.constant(n, tf.int32)
    if return_info:
        return states, SolveInfo(nfe=nfe)
    return states


def _dtype(y0):
    return tf.nest.flatten(y0)[0].dtype


def _solve_adaptive(solver, func, y0, t, rtol, atol, max_num_steps, options):
    t = tf.cast(tf.convert_to_tensor(t), _dtype(y0))
    tfp_solver = solver.make(rtol, atol, max_num_steps, **options)
    try:
        result = tfp_solver.solve(func, t[0], y0, solution_times=t)
    except tf.errors.InvalidArgumentError as e:
        if "max_num_steps" in str(e):
            raise MaxStepsExceededError(
                f"the adaptive solve needed more than max_num_steps={max_num_steps} steps "
                f"at rtol={rtol}, atol={atol}: loosen the tolerances, raise max_num_steps, "
                "or use a fixed-grid method"
            ) from None
        raise
    return result.states, result.diagnostics.num_ode_fn_evaluations
