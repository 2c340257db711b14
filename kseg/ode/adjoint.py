"""kseg's adjoint sensitivity method for adaptive solves, with the parameter gradients
kept out of the stepped state.

The adjoint method (Chen et al. 2018, sec. 2) gets the gradients of a solve by integrating,
backwards in time from the last output time, the state y, its adjoint a = dL/dy and the
parameter gradient g = dL/dtheta:

    dy/dt = f(t, y),   da/dt = -a^T df/dy,   dg/dt = -a^T df/dtheta.

Memory does not grow with the number of steps: nothing of the forward solve is kept but its
outputs. tfp's implementation (`tfp.math.ode.Solver.solve`) steps all three with its
Dormand-Prince, so the parameter gradients, the size of the model, are carried through
every Runge-Kutta stage, the interpolation data and the error estimate; they also enter
the error norm, where they make the backward solve take steps the state does not need.

Here only (y, a) are stepped. g never enters the right-hand side, so integrating it with
the same Runge-Kutta step is a quadrature, g += h * sum_i b_i g_i over the accepted steps.
Each stage's g_i is added to the running total as soon as it is computed, so g needs one
parameter-sized buffer instead of tfp's dozen or so; a rejected step evaluates its stages
again and takes their share out, which trades time for memory (below). Steps are accepted
on the error of (y, a) alone: the "seminorm" of Kidger, Chen & Lyons, "'Hey, that's not an
ODE': Faster ODE Adjoints via Seminorms" (ICML 2021), which torchdiffeq offers as
`adjoint_options=dict(norm="seminorm")`.

The backward solve is Dormand-Prince 5(4) with the forward's tolerances and torchdiffeq's
step control. Its first attempt is half the forward's last accepted step (it starts where
the forward solve ended, with the same Jacobian in its dynamics), or, when the forward
solver does not report one, Hairer's rule (`kseg.ode.dopri.initial_step_size`). No
attempt is longer than the forward's accepted step at the same time: the forward's step
control found how long a step the state's dynamics allow there, and the backward solve
steps the same state (reversed) and its adjoint, whose dynamics share the Jacobian. Left
to the controller, which lengthens a step up to tenfold after a small error, the backward
solve tried steps that the state's error then rejected, each rejection costing an attempt
and its undoing (below; bench/RESULTS.md, segnode_memory, has the counts). Stage 1
is evaluated again at every step instead of reusing the last stage (FSAL). Reusing it
would mean differentiating stage 7 with respect to the parameters as well, and holding
that parameter-sized gradient whole beside the running total until the step's error is
known, since its weight in the sum is the next step's size (tried: a higher peak, and no
time saved that a run could show; bench/RESULTS.md). The stages run strictly one after
another (control dependencies, `parallel_iterations=1`): left to itself, TensorFlow starts
a stage's VJP while the previous stage's parameter gradients are still being added, and
two evaluations' activations are resident at once.
Stage 7, evaluated only for the error estimate, runs after the solution and the error's
other terms are formed, so stages 1-6 are freed before it. The VJP's sign is folded into
the step weights rather than written out as negated copies. Between output times the
state restarts from the stored forward output, as tfp does.

Undoing a rejected step is an iteration of the step loop of its own, running the same
stages with the opposite sign, so the graph holds the stages once. Summing each step into
a second buffer instead would keep another parameter-sized buffer and the step's stage
gradients alive; undoing costs a rejected step's stages twice instead (bench/RESULTS.md,
segnode_memory, counts the backward solve's evaluations and rejections).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from kseg.ode.dopri import (
    _TABLEAU,
    DormandPrince,
    initial_step_size,
    scaled_error_rms,
    step_factor,
)

ERROR_ORDER = DormandPrince.ERROR_ORDER  # of the embedded error estimate
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0  # step control of torchdiffeq and scipy
_A = [0.0, *_TABLEAU.a]  # stage times
_B = _TABLEAU.b  # stage coefficients
_SOLUTION = _TABLEAU.c_sol  # weights of the 5th-order solution (stages 2 and 7 weigh 0)
_ERROR = _TABLEAU.c_error


def _combine(base, h, weights, ks):
    """base + h * sum(w * k) over the nonzero weights, for lists of tensors; base None
    gives h * sum(w * k) alone."""
    out = []
    for j in range(len(ks[0])):
        acc = None
        for w, k in zip(weights, ks, strict=False):
            if w:
                term = w * k[j]
                acc = term if acc is None else acc + term
        if base is None:
            out.append(h * acc)
        else:
            out.append(base[j] if acc is None else base[j] + h * acc)
    return out


class _Augmented:
    """The backward dynamics of (y, a) and the parameter integrand, from `func`'s VJP."""

    def __init__(self, func: Callable, structure, params: list[tf.Variable]):
        self.func, self.structure, self.params = func, structure, params

    def __call__(self, t, y: list, a: list, with_params: bool):
        """(f, a^T df/dy, a^T df/dtheta or None), each a list of tensors. The adjoint's
        derivative is minus the second, the parameter integrand minus the third; the
        callers fold the sign into their step weights rather than write negated copies."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(y)
            if with_params:
                tape.watch(self.params)
            f = tf.nest.flatten(self.func(t, tf.nest.pack_sequence_as(self.structure, y)))
        sources = y + (self.params if with_params else [])
        grads = tape.gradient(
            f, sources, output_gradients=a, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return f, grads[: len(y)], (grads[len(y) :] if with_params else None)


def _stages(aug, t, h, y, a, g, sign):
    """Stages 1-6 of a Dormand-Prince step of (y, a) from t with step h (< 0), each
    stage's parameter integrand added to g as it comes: g - sign * h * c_i * a^T df/dtheta,
    sign (a scalar tensor) 1 to take the step, -1 to take a rejected step's share out.

    Returns (ky, va, g): f and a^T df/dy at each stage (da/dt = -va).
    """
    ky, va = [], []
    for i in range(6):
        # One stage at a time: without this, TF starts the next stage's VJP while the
        # last one's parameter gradients are still being added, and both are resident.
        with tf.control_dependencies(g):
            yi = _combine(y, h, _B[i - 1], ky) if i else y
            ai = _combine(a, -h, _B[i - 1], va) if i else a
        wants_params = _SOLUTION[i] != 0
        fy_i, va_i, vp_i = aug(t + _A[i] * h, yi, ai, with_params=wants_params)
        ky.append(fy_i)
        va.append(va_i)
        if wants_params:
            w = (sign * _SOLUTION[i]) * h
            g = [gj - w * pj for gj, pj in zip(g, vp_i, strict=True)]
    return ky, va, g


def _forward_step_at(grid, t):
    """The length of the forward solve's accepted step that a backward step from t enters:
    grid[j] - grid[j - 1] for the first grid[j] >= t. `grid` is the forward's initial time,
    the ends of its accepted steps in ascending order and +inf, so past its last recorded
    step the length is inf."""
    j = tf.maximum(tf.searchsorted(grid, tf.reshape(t, [1]), side="left")[0], 1)
    return tf.gather(grid, j) - tf.gather(grid, j - 1)


def _backward_interval(
    aug, t_hi, t_lo, y, a, g, rtol, atol, max_steps, first_step=None, forward_grid=None
):
    """Integrates (y, a) from t_hi down to t_lo and adds the parameter integral to g.
    `first_step` (> 0) is the size of the first attempt; None chooses it by Hairer's rule.
    `forward_grid` (`_forward_step_at`'s grid, or None) caps each attempt at the length of
    the forward solve's accepted step it starts in.

    Returns (y, a, g, (evaluations, accepted, rejected)): evaluations of the augmented
    dynamics (each one evaluation of the function and its VJP), counting the first-step
    rule's two when it runs and the undoing of each rejected step.
    """
    dtype = y[0].dtype
    rtol, atol = tf.cast(rtol, dtype), tf.cast(atol, dtype)
    t_hi, t_lo = tf.cast(t_hi, dtype), tf.cast(t_lo, dtype)
    if forward_grid is not None:
        forward_grid = tf.cast(forward_grid, dtype)

    def reversed_rhs(s, state):
        """d(y, a)/ds in the reversed time s = -t: (-f, a^T df/dy)."""
        n = len(y)
        fy, va, _ = aug(-s, list(state[:n]), list(state[n:]), with_params=False)
        return [-d for d in fy] + va

    if first_step is None:
        # Hairer's first step on (y, a) integrated in the reversed time.
        h0 = initial_step_size(
            reversed_rhs, -t_hi, y + a, reversed_rhs(-t_hi, y + a), ERROR_ORDER, rtol, atol
        )
        rule_evaluations = 2
    else:
        first_step = tf.cast(first_step, dtype)
        # Half the forward's last step: the backward error also measures the adjoint.
        h0 = 0.5 * tf.where(first_step > 0, first_step, t_hi - t_lo)
        rule_evaluations = 0

    def body(t, h, y, a, g, steps, undone, undo):
        """One iteration: a step attempt, or, after a rejection, taking the rejected
        step's parameter integral (still in g) out again. `undo` is that step's size, or
        0. Both run the same stages, so the graph holds them once."""
        undoing = undo != 0
        if forward_grid is not None:
            h = tf.maximum(h, -_forward_step_at(forward_grid, t))
        last = h <= t_lo - t  # h < 0: this step reaches (or would pass) t_lo
        h_stages = tf.where(undoing, undo, tf.maximum(h, t_lo - t))
        sign = tf.where(undoing, tf.constant(-1.0, dtype), tf.constant(1.0, dtype))
        ky, va, g = _stages(aug, t, h_stages, y, a, g, sign)

        def attempt():
            h = h_stages
            y1 = _combine(y, h, _SOLUTION, ky)
            a1 = _combine(a, -h, _SOLUTION, va)
            error = _combine(None, h, _ERROR[:6], ky) + _combine(None, -h, _ERROR[:6], va)
            # Stage 7 (at y1, for the error estimate only) after everything that reads
            # stages 1-6, so that they are freed before it runs.
            with tf.control_dependencies(error + y1 + a1):
                y1_, a1_ = [tf.identity(v) for v in y1], [tf.identity(v) for v in a1]
            fy7, va7, _ = aug(t + h, y1_, a1_, with_params=False)
            n, w7 = len(y), _ERROR[6] * h
            error = [e + w7 * k for e, k in zip(error[:n], fy7, strict=True)] + [
                e - w7 * v for e, v in zip(error[n:], va7, strict=True)
            ]
            ratio = scaled_error_rms(error, y + a, y1_ + a1_, rtol, atol)
            accept = ratio <= 1
            factor = step_factor(
                ratio, accept, ERROR_ORDER, SAFETY, tf.constant(MIN_FACTOR, dtype), MAX_FACTOR
            )
            # tf.cond hands the chosen tensors on; tf.where would write copies of them.
            y_next, a_next = tf.cond(accept, lambda: (y1_, a1_), lambda: (y, a))
            t_next = tf.where(accept, tf.where(last, t_lo, t + h), t)
            undo_next = tf.where(accept, tf.zeros_like(h), h)
            return t_next, h * factor, y_next, a_next, undo_next

        t, h, y, a, undo = tf.cond(undoing, lambda: (t, h, y, a, tf.zeros_like(undo)), attempt)
        return t, h, y, a, g, steps + 1, undone + tf.cast(undoing, tf.int32), undo

    def cond(t, h, y, a, g, steps, undone, undo):
        with tf.control_dependencies(
            [tf.debugging.assert_less(steps, max_steps, message="max_num_steps exceeded")]
        ):
            return t > t_lo

    h0 = -tf.cast(h0, dtype)
    zero = tf.constant(0)
    _, _, y, a, g, steps, undone, _ = tf.while_loop(
        cond,
        body,
        (t_hi, h0, y, a, g, zero, zero, tf.zeros_like(h0)),
        parallel_iterations=1,
    )
    # Every rejected attempt is followed by one iteration undoing it.
    rejected = undone
    accepted = steps - 2 * undone
    evaluations = rule_evaluations + 7 * (accepted + rejected) + 6 * undone
    return y, a, g, tf.stack([evaluations, accepted, rejected])


def cotangents(outputs: list, d: list) -> list:
    """The cotangents a `tf.custom_gradient` gradient function receives for its `outputs`,
    with zeros where TensorFlow passes None (an output the loss does not read)."""
    return [tf.zeros_like(o) if di is None else di for o, di in zip(outputs, d, strict=True)]


def by_time(flat: list, n: int) -> list[list]:
    """A flat list of the states at successive times, `n` tensors each, as one list of
    `n` tensors per time."""
    return [flat[i : i + n] for i in range(0, len(flat), n)]


def custom_gradient_result(a: list, g: list, params: list, variables):
    """What a `tf.custom_gradient` gradient function returns: the initial state's gradient
    `a`, and with `variables` (those the forward read) their gradients, `g` for the
    trainable ones among them (`params`, in order) and None for the others."""
    if not variables:
        return a
    by_param = {id(p): gi for p, gi in zip(params, g, strict=True)}
    return a, [by_param.get(id(v)) for v in variables]


def odeint_adjoint(
    solve: Callable,
    func: Callable,
    y0,
    times: list[float] | tf.Tensor,
    rtol: float,
    atol: float,
    max_num_steps: int | None,
    on_backward: Callable | None = None,
):
    """Runs `solve(y0) -> (states, counts, last_step, step_ends)` (states with a leading
    time axis over `times`, last_step the size of the forward solve's last accepted step
    or None, step_ends the ends of its accepted steps in ascending order, +inf-padded, or
    None) and differentiates it with kseg's adjoint (module docstring) instead of
    `solve`'s own gradient. Gradients reach y0 and the trainable variables `func` reads.
    The backward solve's first attempt is half `last_step`: the forward solve ended with
    a step of that size accepted, and the backward solve starts where it ended, with the
    same Jacobian in its dynamics (halved because its error measures the adjoint too).
    Hairer's rule, a blind guess that costs two evaluations, chooses it when `last_step`
    is None. No backward attempt is longer than the forward's accepted step at the same
    time (module docstring).

    Returns (states, counts) as `solve` does; `on_backward`, if given, is called during
    differentiation with the backward solve's (evaluations, accepted, rejected) as int32
    scalars (`_backward_interval` says what they count).
    """
    structure = y0
    flat_y0 = tf.nest.flatten(y0)
    times = tf.convert_to_tensor(times, flat_y0[0].dtype)
    max_steps = max_num_steps if max_num_steps is not None else 2**31 - 1
    counts = []

    @tf.custom_gradient
    def run(*flat):
        states, info, last_step, step_ends = solve(tf.nest.pack_sequence_as(structure, list(flat)))
        counts.append(info)
        flat_states = tf.nest.flatten(states)
        forward_grid = None
        if step_ends is not None:
            inf = tf.constant([float("inf")], times.dtype)
            forward_grid = tf.concat([times[:1], tf.cast(step_ends, times.dtype), inf], 0)

        def grad(*d_states, variables=None):
            params = [v for v in variables or [] if v.trainable]
            aug = _Augmented(func, structure, params)
            d_states = cotangents(flat_states, d_states)

            def interval(i, a, g, total):
                """From output time i back to i - 1; the state restarts from the stored
                forward output, and the adjoint takes the cotangent of output i - 1."""
                y = [tf.gather(s, i) for s in flat_states]
                _, a, g, counts = _backward_interval(
                    aug, tf.gather(times, i), tf.gather(times, i - 1), y, a, g, rtol, atol,
                    max_steps, last_step, forward_grid,
                )  # fmt: skip
                a = [ai + tf.gather(d, i - 1) for ai, d in zip(a, d_states, strict=True)]
                return i - 1, a, g, total + counts

            # A loop rather than a Python loop over the intervals: one copy of the backward
            # solve in the graph, however many output times.
            _, a, g, total = tf.while_loop(
                lambda i, a, g, total: i > 0,
                interval,
                (
                    tf.size(times) - 1,
                    [d[-1] for d in d_states],
                    [tf.zeros_like(p) for p in params],
                    tf.zeros(3, tf.int32),
                ),
                parallel_iterations=1,
            )
            if on_backward is not None:
                on_backward(tuple(tf.unstack(total)))
            return custom_gradient_result(a, g, params, variables)

        return flat_states, grad

    flat_states = run(*flat_y0)
    return tf.nest.pack_sequence_as(structure, list(flat_states)), counts[0]
