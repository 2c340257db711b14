"""`odeint`: integrate dy/dt = func(t, y) and return the states at the requested times."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from kseg.ode.checkpoint import integrate_checkpointed
from kseg.ode.grid_adjoint import integrate_adjoint
from kseg.ode.solvers import AdaptiveSolver, Func, check_gradient, get_solver

DEFAULT_MAX_NUM_STEPS = 1000
DEFAULT_STEPS = 10  # a fixed grid's steps over the interval when none are given


class MaxStepsExceededError(RuntimeError):
    """An adaptive solve needed more steps than `max_num_steps` allows."""


class SolveInfo(NamedTuple):
    """Step accounting of one solve, as scalar int32 tensors (a NamedTuple, so a
    `tf.function` can return it).

    nfe: calls of the function in the forward solve.
    accepted: steps that advanced the solution (for fixed grids, every step).
    rejected: steps retried with a smaller size (0 for fixed grids).
    `bdf` reports -1 for accepted and rejected (tfp does not expose them) and its nfe
    leaves out the evaluations inside Jacobians. The backward pass is not counted here;
    `odeint`'s `on_backward` reports it.
    """

    nfe: tf.Tensor
    accepted: tf.Tensor
    rejected: tf.Tensor


def _static_times(t) -> list[float]:
    if isinstance(t, (list, tuple)) and all(isinstance(v, (int, float)) for v in t):
        return [float(v) for v in t]  # as given, not rounded through float32
    value = tf.get_static_value(tf.convert_to_tensor(t))
    if value is None:
        raise ValueError(
            "fixed-grid methods need the output times known when the graph is built "
            "(a list or a constant tensor); use an adaptive method for computed times"
        )
    return [float(v) for v in np.atleast_1d(value)]


@tf.autograph.experimental.do_not_convert  # static Python loops only; tfp builds its own
def odeint(
    func: Func,
    y0,
    t: Sequence[float] | tf.Tensor,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-3,
    gradient: str | None = None,
    max_num_steps: int | None = DEFAULT_MAX_NUM_STEPS,
    options: dict | None = None,
    return_info: bool = False,
    on_backward: Callable | None = None,
    final_only: bool = False,
):
    """Integrates dy/dt = func(t, y) from t[0] and returns the states at every time in t.

    Args:
        func: derivative, called as `func(t, y)` with `y` of the same structure as `y0`.
        y0: initial state: a tensor or a nested structure of tensors of any shapes.
        t: 1-D increasing times; the result has a leading axis of len(t) with y0 first.
        method: a name from `kseg.ode.SOLVERS` ("dopri5", "bdf", "euler", "midpoint",
            "heun", "rk4").
        rtol, atol: tolerances of the adaptive methods.
        gradient: how the solve is differentiated, None for the method's default:
            "adjoint" (dopri5's default, kseg's adjoint method, `kseg.ode.adjoint`),
            "aca" (dopri5, back-propagation through the accepted steps from checkpoints,
            `kseg.ode.aca`), "aca_stagewise" (the same, one stage's activations at a
            time), "tfp_adjoint" (tfp's adjoint; bdf's only one), "direct"
            (fixed grids, back-propagation through the steps), "checkpoint" (fixed grids,
            the same gradients one evaluation at a time, `kseg.ode.checkpoint`), "adjoint"
            on a fixed grid (the adjoint method on the grid reversed,
            `kseg.ode.grid_adjoint`). A value the method cannot honour raises ValueError.
        max_num_steps: adaptive methods stop with `MaxStepsExceededError` beyond this;
            None means unbounded.
        options: for fixed-grid methods `{"steps": N}` (default 10) or `{"step_size": h}`;
            for adaptive ones, extra keyword arguments of the tfp solver, e.g.
            `{"first_step_size": h}` (the "aca" gradients take only that one).
        return_info: also return a `SolveInfo`: function evaluations, accepted and
            rejected steps.
        on_backward: called, when the solve is differentiated, with the backward pass's
            `SolveInfo` (the adjoints, the aca and the checkpoint gradients): evaluations
            of the function with its VJP, accepted and rejected steps.
        final_only: return the state at t[-1] alone, without the time axis. On a fixed
            grid the states are then never stacked, so the gradient holds no stack of
            zeros for the times the loss does not read.

    Returns:
        The states (structure of y0, each with a leading time axis; without it and at
        t[-1] alone with `final_only`), and with `return_info` a tuple (states, SolveInfo).
    """
    solver = get_solver(method)
    options = dict(options or {})
    y0 = tf.nest.map_structure(tf.convert_to_tensor, y0)
    gradient = check_gradient(method, gradient)
    report = None
    if on_backward is not None:

        def report(counts):
            on_backward(SolveInfo(*(tf.cast(c, tf.int32) for c in counts)))

    if isinstance(solver, AdaptiveSolver):
        states, counts = _solve_adaptive(
            solver, func, y0, t, rtol, atol, max_num_steps, options, gradient, report
        )
        if final_only:
            states = tf.nest.map_structure(lambda s: s[-1], states)
    else:
        times = _static_times(t)
        if any(b <= a for a, b in zip(times[:-1], times[1:], strict=True)):
            raise ValueError(f"times must be strictly increasing, got {times}")
        steps = options.pop("steps", None)
        if "step_size" in options:
            steps = max(1, round((times[-1] - times[0]) / options.pop("step_size")))
        if options:
            raise ValueError(f"unknown options for {method!r}: {sorted(options)}")
        steps = DEFAULT_STEPS if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        wrapped = lambda s, y: func(tf.constant(s, dtype=_dtype(y0)), y)  # noqa: E731
        if gradient in ("checkpoint", "adjoint"):
            integrate = integrate_checkpointed if gradient == "checkpoint" else integrate_adjoint
            flat, taken = integrate(
                solver, lambda s, y: tf.nest.flatten(wrapped(s, _packed(y0, y))),
                tf.nest.flatten(y0), times, steps, report,
            )  # fmt: skip
            trajectory = [_packed(y0, y) for y in flat]
        else:
            trajectory, taken = solver.integrate(wrapped, y0, times, steps)
        if final_only:
            states = trajectory[-1]
        else:
            states = tf.nest.map_structure(lambda *ys: tf.stack(ys), *trajectory)
        counts = (taken * solver.evaluations, taken, 0)
    if return_info:
        return states, SolveInfo(*(tf.cast(c, tf.int32) for c in counts))
    return states


def _packed(structure, flat: list):
    return tf.nest.pack_sequence_as(structure, list(flat))


def _dtype(y0):
    return tf.nest.flatten(y0)[0].dtype


def _solve_adaptive(solver, func, y0, t, rtol, atol, max_num_steps, options, gradient, report):
    t = tf.cast(tf.convert_to_tensor(t), _dtype(y0))
    try:
        return solver.integrate(func, y0, t, rtol, atol, max_num_steps, options, gradient, report)
    except tf.errors.InvalidArgumentError as e:
        if "max_num_steps" in str(e):
            raise MaxStepsExceededError(
                f"the adaptive solve needed more than max_num_steps={max_num_steps} steps "
                f"at rtol={rtol}, atol={atol}: loosen the tolerances, raise max_num_steps, "
                "or use a fixed-grid method"
            ) from None
        raise
