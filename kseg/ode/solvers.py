"""ODE solvers by name: adaptive ones from `tfp.math.ode`, fixed-grid ones in plain ops.

| name     | kind                    | order | gradients (default first)  | TFLite builtins |
|----------|-------------------------|-------|----------------------------|-----------------|
| dopri5   | adaptive, Dormand-Prince| 5(4)  | adjoint, aca,              | no (while loop) |
|          |                         |       | aca_stagewise, tfp_adjoint |                 |
| bdf      | adaptive, implicit BDF  | 1-5   | tfp_adjoint                | no              |
| euler    | fixed grid              | 1     | direct, checkpoint, adjoint| yes             |
| midpoint | fixed grid              | 2     | direct, checkpoint, adjoint| yes             |
| heun     | fixed grid              | 2     | direct, checkpoint, adjoint| yes             |
| rk4      | fixed grid (3/8 rule)   | 4     | direct, checkpoint, adjoint| yes             |

Gradients:
- `adjoint`: kseg's adjoint sensitivity method (`kseg.ode.adjoint`; on a fixed grid
  `kseg.ode.grid_adjoint`, the forward's grid stepped backwards); memory flat in the
  number of steps, one function evaluation's activations at a time. On a fixed grid its
  gradients are the ODE's, which differ from the grid's own by its error.
- `aca`: back-propagation through the forward solve's accepted steps, one at a time from
  stored checkpoints (`kseg.ode.aca`); one step's activations, no backward step search.
- `aca_stagewise`: the same, each step back-propagated one stage at a time; one
  evaluation's activations, five more evaluations per step.
- `tfp_adjoint`: tfp's adjoint, which also steps the parameter gradients.
- `direct`: back-propagation through the unrolled steps; every evaluation's activations.
- `checkpoint`: the same gradients, one evaluation at a time, each evaluated again in the
  backward pass from its stored input (`kseg.ode.checkpoint`); one evaluation's
  activations, twice the evaluations.

`dopri5` is tfp's solver with torchdiffeq's first step and step control, see
`kseg.ode.dopri`. Fixed-grid solvers share one base class and differ in their Butcher
tableau; they are unrolled into a static number of steps: plain TensorFlow ops that
convert to TFLite.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf
import tensorflow_probability as tfp

from kseg.errors import SolverSettingError, UnknownNameError
from kseg.ode.aca import odeint_aca
from kseg.ode.adjoint import odeint_adjoint
from kseg.ode.dopri import DormandPrince

Func = Callable  # func(t, y) -> dy/dt, y a nested structure of tensors


def _axpy(y, dt, *terms):
    """y + dt * sum(c_i * k_i) for nested structures; terms are (c_i, k_i) pairs."""

    def combine(yi, *ks):
        acc = sum(c * k for (c, _), k in zip(terms, ks, strict=True))
        return yi + dt * acc

    return tf.nest.map_structure(combine, y, *(k for _, k in terms))


class FixedGridSolver:
    """Explicit Runge-Kutta on a fixed grid, given by its Butcher tableau (a, b, c):
    stage i is evaluated at t + c[i] dt on y + dt sum_j a[i][j] k_j, and the step is
    y + dt sum_i b[i] k_i. Subclasses set `tableau` and `order`."""

    order: int = 0
    tableau: tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]
    adaptive = False
    gradients = ("direct", "checkpoint", "adjoint")

    @property
    def evaluations(self) -> int:
        """Function evaluations per step."""
        return len(self.tableau[1])

    def stages(self, func: Func, t, dt, y) -> tuple[list, list]:
        """(k_i, the input state of each stage) of one step from (t, y)."""
        a, _, c = self.tableau
        ks, inputs = [], []
        for i in range(self.evaluations):
            inputs.append(_axpy(y, dt, *zip(a[i], ks, strict=True)) if i else y)
            ks.append(func(t + c[i] * dt, inputs[-1]))
        return ks, inputs

    def solution(self, y, dt, ks: list):
        """y + dt sum_i b_i k_i: the step's result from its stages."""
        return _axpy(y, dt, *((w, k) for w, k in zip(self.tableau[1], ks, strict=True) if w))

    @staticmethod
    def grid(times: list[float], steps: int) -> list[list[tuple[float, float]]]:
        """The steps (t, dt) of each interval between output times: `steps` uniform steps
        over the whole span, each interval its share (at least one), so that the grid hits
        every output time exactly."""
        span = times[-1] - times[0]
        intervals = []
        for t0, t1 in zip(times[:-1], times[1:], strict=True):
            # 1e-4 absorbs float32 rounding of the times (0.6 - 0.55 is 0.05000001).
            n = max(1, math.ceil(steps * abs(t1 - t0) / abs(span) - 1e-4)) if span else 1
            dt = (t1 - t0) / n
            intervals.append([(t0 + i * dt, dt) for i in range(n)])
        return intervals

    def integrate(self, func: Func, y0, times: list[float], steps: int, stage_inputs=None):
        """States at `times` (a static list) on `grid(times, steps)`; returns (states,
        steps taken). `stage_inputs`, a list if given, receives each step's stage input
        states (what the checkpoint gradient keeps, `kseg.ode.checkpoint`)."""
        states, y, taken = [y0], y0, 0
        for interval in self.grid(times, steps):
            for t, dt in interval:
                ks, inputs = self.stages(func, t, dt, y)
                y = self.solution(y, dt, ks)
                if stage_inputs is not None:
                    stage_inputs.append(inputs)
                taken += 1
            states.append(y)
        return states, taken


class Euler(FixedGridSolver):
    order, tableau = 1, (((),), (1.0,), (0.0,))


class Midpoint(FixedGridSolver):
    order, tableau = 2, (((), (0.5,)), (0.0, 1.0), (0.0, 0.5))


class Heun(FixedGridSolver):
    order, tableau = 2, (((), (1.0,)), (0.5, 0.5), (0.0, 1.0))


class RK4(FixedGridSolver):
    """Fourth-order Runge-Kutta, 3/8 rule (torchdiffeq's `rk4` uses the same tableau)."""

    order = 4
    tableau = (
        ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
        (1 / 8, 3 / 8, 3 / 8, 1 / 8),
        (0.0, 1 / 3, 2 / 3, 1.0),
    )


class AdaptiveSolver:
    """A `tfp.math.ode` solver (`tfp_class`) and the ways it can be differentiated
    (`gradients`, the first the default; module docstring)."""

    adaptive = True
    tfp_class: type
    gradients: tuple[str, ...] = ()

    def make(self, rtol: float, atol: float, max_num_steps: int | None, **options):
        return self.tfp_class(rtol=rtol, atol=atol, max_num_steps=max_num_steps, **options)

    def integrate(
        self,
        func: Func,
        y0,
        t: tf.Tensor,
        rtol,
        atol,
        max_num_steps,
        options,
        gradient: str,
        on_backward: Callable | None = None,
    ):
        """States at the times `t` (the first is the initial time), and the step accounting
        (evaluations, accepted, rejected) as int32 scalars, -1 where the solver cannot say.

        kseg's Dormand-Prince counts everything (see `kseg.ode.dopri`). For tfp's BDF the
        evaluations are tfp's count, which leaves out those inside Jacobians, and the
        accepted/rejected split is not reported. `on_backward` receives the backward
        pass's accounting (kseg's adjoint and the aca gradients only).
        """
        if gradient in ("aca", "aca_stagewise"):
            options = dict(options)
            first_step = options.pop("first_step_size", None)
            if options:
                raise ValueError(
                    f"gradient {gradient!r} takes no solver options but first_step_size, got "
                    f"{sorted(options)}"
                )
            stagewise = gradient == "aca_stagewise"
            return odeint_aca(
                func, y0, t, rtol, atol, max_num_steps, on_backward, first_step, stagewise
            )
        solver = self.make(rtol, atol, max_num_steps, **options)

        def solve(y0):
            """(states, accounting, the last accepted step's size or None, the ends of the
            accepted steps or None)."""
            result = solver.solve(func, t[0], y0, solution_times=t)
            diagnostics = result.diagnostics
            if isinstance(solver, DormandPrince):
                state = result.solver_internal_state
                last_step = state.current_time - state.last_step_start
                counts = (solver.evaluations(diagnostics), *solver.steps(diagnostics))
                return result.states, counts, last_step, state.step_ends
            unknown = tf.constant(-1, tf.int32)
            nfe = tf.cast(diagnostics.num_ode_fn_evaluations, tf.int32)
            return result.states, (nfe, unknown, unknown), None, None

        if gradient == "tfp_adjoint":
            return solve(y0)[:2]
        return odeint_adjoint(solve, func, y0, t, rtol, atol, max_num_steps, on_backward)


class Dopri5(AdaptiveSolver):
    tfp_class = DormandPrince
    gradients = ("adjoint", "aca", "aca_stagewise", "tfp_adjoint")


class BDF(AdaptiveSolver):
    # A stiff problem's backward solve needs an implicit method too: tfp's adjoint steps
    # it with BDF; kseg's adjoint is explicit Dormand-Prince.
    tfp_class = tfp.math.ode.BDF
    gradients = ("tfp_adjoint",)


# Names to solver classes; `get_solver` builds one per call, as torchdiffeq's SOLVERS.
SOLVERS: dict[str, type[FixedGridSolver | AdaptiveSolver]] = {
    "dopri5": Dopri5,
    "bdf": BDF,
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": RK4,
}


def get_solver(method: str) -> FixedGridSolver | AdaptiveSolver:
    """A new solver of the method registered as `method`; an unknown name lists the
    valid ones."""
    if method not in SOLVERS:
        raise UnknownNameError(f"unknown ODE method {method!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[method]()


def check_gradient(method: str, gradient: str | None) -> str:
    """The gradient `method` uses: `gradient`, or the method's default if None; one it
    cannot honour raises ValueError naming the ones it can."""
    choices = get_solver(method).gradients
    if gradient is None:
        return choices[0]
    if gradient not in choices:
        raise SolverSettingError(
            f"{method!r} cannot be differentiated with gradient={gradient!r}; it offers "
            f"{', '.join(choices)}"
        )
    return gradient
