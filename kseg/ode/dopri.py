"""Dormand-Prince 5(4) on tfp's solver, with the step control of scipy and torchdiffeq.

`tfp.math.ode.DormandPrince` integrates with the adjoint method and keeps that here; its
per-solve hooks are overridden (tfp is pinned below 0.26 in pyproject.toml, and
tests/ode/test_dopri.py fails if the hooks change) for four things:

* The first step is chosen from the problem, by the rule of Hairer, Norsett & Wanner
  (Solving ODEs I, sec. II.4), as scipy's `solve_ivp` and torchdiffeq do, instead of tfp's
  constant 1e-3. It costs one function evaluation. The backward (adjoint) solve chooses
  its own first step the same way.
* The error of a step is the RMS norm of err / (atol + rtol max(|y0|, |y1|)), and the next
  step is h * clip(0.9 * error^(-1/5), 0.2 after a rejection or 1 after an acceptance, 10),
  as in torchdiffeq. tfp 0.25 squares the scaled error twice before its RMS norm and uses
  the exponent -1/6, so it adapts the step to a different quantity and rejects more steps:
  on y' = -2ty over [0, 2] at tolerance 1e-3 it needs 110 evaluations where scipy's RK45
  needs 62. The acceptance test (error <= 1) is unchanged.
* The solver state also collects the end of every accepted step (`step_ends`), which
  kseg's adjoint uses to cap the steps of its backward solve (`kseg.ode.adjoint`). tfp's
  loops only `_replace` fields of the state, so a namedtuple with one more field passes
  through them.
* Every attempted step is classified as accepted (time advanced) or rejected. tfp's
  `Diagnostics` type has no fields for that and its while loop needs the type it started
  with, so the counts ride in two fields Dormand-Prince never uses:
  `num_jacobian_evaluations` holds accepted steps and `num_matrix_factorizations` rejected
  ones. `odeint` reads them back under their real names (`SolveInfo`).

tfp does not count the evaluation of f(t0, y0) in `num_ode_fn_evaluations`;
`DormandPrince.evaluations` adds it, and the one of the first-step rule, so it counts every
call of the function, as torchdiffeq's and scipy's counters do.
"""

from __future__ import annotations

import collections

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.math.ode import dormand_prince as tfp_dormand_prince
from tensorflow_probability.python.math.ode import runge_kutta_util as rk_util

_TABLEAU = tfp_dormand_prince._TABLEAU  # the Dormand-Prince coefficients

# Evaluations a solve makes outside tfp's count: f(t0, y0) always, one more when the first
# step is chosen by the rule.
UNCOUNTED_EVALUATIONS = 1
FIRST_STEP_EVALUATIONS = 1


# tfp's solver state and the ends of the accepted steps so far, in ascending order, +inf
# in the places not yet filled; a solve keeps its first STEP_ENDS_KEPT.
STEP_ENDS_KEPT = 1024
DopriState = collections.namedtuple(
    "DopriState", [*tfp_dormand_prince._RungeKuttaSolverInternalState._fields, "step_ends"]
)


def _rms(structure) -> tf.Tensor:
    """Root mean square over every element of a nested structure, summed tensor by tensor
    (no concatenated copy of the state: the adjoint's memory counts it)."""
    flat = tf.nest.flatten(structure)
    squares = tf.add_n([tf.reduce_sum(tf.square(x)) for x in flat])
    count = tf.cast(tf.add_n([tf.size(x) for x in flat]), squares.dtype)
    return tf.sqrt(squares / count)


def initial_step_size(func, t0, y0, f0, order: int, rtol, atol) -> tf.Tensor:
    """First step for an embedded pair whose error estimate has order `order`.

    Hairer, Norsett & Wanner, Solving ODEs I (2nd ed.), sec. II.4, "Starting step size":
    a trial step h0 = 0.01 |y0| / |f0| (norms scaled by atol + rtol |y0|), one evaluation
    at y0 + h0 f0 to estimate the second derivative, then the step whose local error would
    be 0.01, capped at 100 h0. Returns a scalar without gradient.
    """
    y0, f0 = tf.nest.map_structure(tf.stop_gradient, (y0, f0))
    scale = tf.nest.map_structure(lambda y: atol + rtol * tf.abs(y), y0)
    d0 = _rms(tf.nest.map_structure(tf.divide, y0, scale))
    d1 = _rms(tf.nest.map_structure(tf.divide, f0, scale))
    h0 = tf.where((d0 < 1e-5) | (d1 < 1e-5), tf.constant(1e-6, d0.dtype), 0.01 * d0 / d1)
    y1 = tf.nest.map_structure(lambda y, f: y + h0 * f, y0, f0)
    f1 = tf.nest.map_structure(tf.stop_gradient, func(t0 + h0, y1))
    d2 = _rms(tf.nest.map_structure(lambda a, b, s: (a - b) / s, f1, f0, scale)) / h0
    dmax = tf.maximum(d1, d2)
    h1 = tf.where(
        dmax <= 1e-15,
        tf.maximum(tf.constant(1e-6, d0.dtype), h0 * 1e-3),
        (0.01 / tf.maximum(dmax, 1e-15)) ** (1.0 / (order + 1)),
    )
    return tf.minimum(100 * h0, h1)


def scaled_error_rms(error, y0, y1, rtol, atol) -> tf.Tensor:
    """RMS of error / (atol + rtol max(|y0|, |y1|)) over a nested structure: a step is
    accepted when it is at most 1."""

    def scaled(e, a, b):
        return e / (atol + rtol * tf.maximum(tf.abs(a), tf.abs(b)))

    return _rms(tf.nest.map_structure(scaled, error, y0, y1))


def step_factor(ratio, accept, order: int, safety, min_factor, max_factor) -> tf.Tensor:
    """torchdiffeq's and scipy's next step / this step: safety * ratio^(-1/(order + 1)),
    clipped to [min_factor after a rejection or 1 after an acceptance, max_factor]. A ratio
    of 0 gives an infinite factor, which the clip turns into max_factor."""
    factor = safety * ratio ** (-1.0 / (order + 1))
    lowest = tf.where(accept, tf.ones_like(min_factor), min_factor)
    return tf.clip_by_value(factor, lowest, max_factor)


class DormandPrince(tfp.math.ode.DormandPrince):
    """tfp's Dormand-Prince with Hairer's first step (unless `first_step_size` is given),
    torchdiffeq's step control and accepted/rejected step counts (see the module docstring).

    `min_step_size_factor` defaults to 0.2 (torchdiffeq, scipy) instead of tfp's 0.1.
    """

    ERROR_ORDER = 4  # order of the embedded error estimate

    def __init__(
        self,
        first_step_size: float | None = None,
        min_step_size_factor: float = 0.2,
        **kwargs,
    ):
        self.chooses_first_step = first_step_size is None
        super().__init__(
            first_step_size=1e-3 if first_step_size is None else first_step_size,
            min_step_size_factor=min_step_size_factor,
            **kwargs,
        )

    def _initialize_solver_internal_state(self, ode_fn, initial_time, initial_state):
        state = super()._initialize_solver_internal_state(ode_fn, initial_time, initial_state)
        # A tensor of fixed size, not a TensorArray: tfp converts every field of the state
        # it returns to a tensor, and XLA needs the loop's shapes fixed.
        step_ends = tf.fill([STEP_ENDS_KEPT], tf.constant(float("inf"), state.step_size.dtype))
        state = DopriState(*state, step_ends=step_ends)
        if not self.chooses_first_step:
            return state
        step = initial_step_size(
            ode_fn,
            state.current_time,
            state.current_state,
            state.current_derivative,
            self.ERROR_ORDER,
            tf.cast(self._rtol, state.step_size.dtype),
            tf.cast(self._atol, state.step_size.dtype),
        )
        return state._replace(step_size=tf.cast(step, state.step_size.dtype))

    def _step(
        self,
        solver_state,
        diagnostics,
        max_ode_fn_evals,
        ode_fn,
        atol,
        rtol,
        safety,
        ifactor,
        dfactor,
    ):
        y0, f0 = solver_state.current_state, solver_state.current_derivative
        t0, dt = solver_state.current_time, solver_state.step_size
        checks = []
        if self._max_num_steps is not None:
            checks.append(
                tf.debugging.assert_less(
                    diagnostics.num_ode_fn_evaluations, max_ode_fn_evals, "max_num_steps exceeded"
                )
            )
        with tf.control_dependencies(checks):
            y1, f1, error, k = rk_util.runge_kutta_step(ode_fn, y0, f0, t0, dt, _TABLEAU)
        ratio = scaled_error_rms(error, y0, y1, rtol, atol)
        accept = ratio <= 1
        factor = step_factor(ratio, accept, self.ERROR_ORDER, safety, dfactor, ifactor)
        coefficients = rk_util.rk_fourth_order_interpolation_coefficients(y0, y1, k, dt, _TABLEAU)
        ends, n = solver_state.step_ends, diagnostics.num_jacobian_evaluations  # accepted
        end = tf.tensor_scatter_nd_update(ends, [[tf.minimum(n, STEP_ENDS_KEPT - 1)]], [t0 + dt])
        ends = tf.where(accept & (n < STEP_ENDS_KEPT), end, ends)
        new_state = solver_state._replace(
            step_ends=ends,
            current_state=rk_util.nest_where(accept, y1, y0),
            current_derivative=rk_util.nest_where(accept, f1, f0),
            last_step_start=t0,
            current_time=tf.where(accept, t0 + dt, t0),
            step_size=dt * factor,
            interpolating_coefficients=rk_util.nest_where(
                accept, coefficients, solver_state.interpolating_coefficients
            ),
        )
        accepted = tf.cast(accept, tf.int32)
        diagnostics = diagnostics._replace(
            num_ode_fn_evaluations=diagnostics.num_ode_fn_evaluations + self.ODE_FN_EVALS_PER_STEP,
            num_jacobian_evaluations=diagnostics.num_jacobian_evaluations + accepted,
            num_matrix_factorizations=diagnostics.num_matrix_factorizations + 1 - accepted,
        )
        return new_state, diagnostics

    def evaluations(self, diagnostics) -> tf.Tensor:
        """Every call of the function in the solve that produced `diagnostics`."""
        extra = UNCOUNTED_EVALUATIONS + (FIRST_STEP_EVALUATIONS if self.chooses_first_step else 0)
        return tf.cast(diagnostics.num_ode_fn_evaluations, tf.int32) + extra

    @staticmethod
    def steps(diagnostics) -> tuple[tf.Tensor, tf.Tensor]:
        """(accepted, rejected) steps of the solve that produced `diagnostics`."""
        return (
            tf.cast(diagnostics.num_jacobian_evaluations, tf.int32),
            tf.cast(diagnostics.num_matrix_factorizations, tf.int32),
        )
