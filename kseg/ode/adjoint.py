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
the same Runge-Kutta step is a quadrature, g += h * sum_i b_i g_i over the accepted
steps, which needs two parameter-sized buffers (the running total and the step's sum)
instead of tfp's dozen or so. Steps are accepted on the error of (y, a) alone: the
"seminorm" of Kidger, Chen & Lyons, "'Hey, that's not an ODE': Faster ODE Adjoints via
Seminorms" (ICML 2021), which torchdiffeq offers as `adjoint_options=dict(norm="seminorm")`.
The backward solve is Dormand-Prince 5(4) with the forward's tolerances, the first step of
`kseg.ode.dopri.initial_step_size` and torchdiffeq's step control. Stage 1 is evaluated
again at every step instead of reusing the last stage (FSAL), because its parameter
gradient would otherwise have to be kept between steps: one more evaluation per step for
one parameter-sized buffer less. The stages run strictly one after another (control
dependencies, `parallel_iterations=1`): left to itself, TensorFlow starts a stage's VJP
while the previous stage's parameter gradients are still being summed, which kept two
evaluations' activations resident (0.4 GiB more for SegNode's training step at 2x256x512,
measured once by hand with the allocator statistics of `bench/_memory.py`). Between output
times the state restarts from the stored forward output, as tfp does.
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
        """(f, -a^T df/dy, -a^T df/dtheta or None), each a list of tensors."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(y)
            if with_params:
                tape.watch(self.params)
            f = tf.nest.flatten(self.func(t, tf.nest.pack_sequence_as(self.structure, y)))
        sources = y + (self.params if with_params else [])
        grads = tape.gradient(
            f, sources, output_gradients=a, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        negated = [-g for g in grads]
        return f, negated[: len(y)], (negated[len(y) :] if with_params else None)


def _backward_interval(aug, t_hi, t_lo, y, a, g, rtol, atol, max_steps):
    """Integrates (y, a) from t_hi down to t_lo and adds the parameter integral to g.

    Returns (y, a, g).
    """
    dtype = y[0].dtype
    rtol, atol = tf.cast(rtol, dtype), tf.cast(atol, dtype)
    t_hi, t_lo = tf.cast(t_hi, dtype), tf.cast(t_lo, dtype)
    fy, fa, _ = aug(t_hi, y, a, with_params=False)

    def both(t, state):
        n = len(y)
        fy_, fa_, _ = aug(t, list(state[:n]), list(state[n:]), with_params=False)
        return fy_ + fa_

    # Hairer's first step on (y, a) integrated in the reversed time s = -t.
    h0 = initial_step_size(
        lambda s, state: [-d for d in both(-s, state)],
        -t_hi,
        y + a,
        [-d for d in fy + fa],
        ERROR_ORDER,
        rtol,
        atol,
    )

    def body(t, h, y, a, g, steps):
        last = h <= t_lo - t  # h < 0: this step reaches (or would pass) t_lo
        h = tf.maximum(h, t_lo - t)
        ky, ka, step_g = [], [], (None if g else [])
        for i in range(7):
            # One stage at a time: without this, TF starts the next stage's VJP while the
            # last one's parameter gradients are still being summed, and both are resident.
            with tf.control_dependencies(step_g or []):
                yi = _combine(y, h, _B[i - 1], ky) if i else y
                ai = _combine(a, h, _B[i - 1], ka) if i else a
            wants_params = _SOLUTION[i] != 0
            fy_i, fa_i, g_i = aug(t + _A[i] * h, yi, ai, with_params=wants_params)
            ky.append(fy_i)
            ka.append(fa_i)
            if wants_params:
                terms = [(h * _SOLUTION[i]) * gi for gi in g_i]
                step_g = (
                    terms if step_g is None else [s + u for s, u in zip(step_g, terms, strict=True)]
                )
        y1 = _combine(y, h, _SOLUTION, ky)
        a1 = _combine(a, h, _SOLUTION, ka)
        stages = [ky_i + ka_i for ky_i, ka_i in zip(ky, ka, strict=True)]  # (y, a) lists joined
        error = _combine(None, h, _ERROR, stages)
        ratio = scaled_error_rms(error, y + a, y1 + a1, rtol, atol)
        accept = ratio <= 1
        factor = step_factor(
            ratio, accept, ERROR_ORDER, SAFETY, tf.constant(MIN_FACTOR, dtype), MAX_FACTOR
        )
        # tf.cond hands the chosen tensors on; tf.where would write copies of them.
        g, y, a = tf.cond(
            accept,
            lambda: ([gi + si for gi, si in zip(g, step_g, strict=True)], y1, a1),
            lambda: (g, y, a),
        )
        t = tf.where(accept, tf.where(last, t_lo, t + h), t)
        return t, h * factor, y, a, g, steps + 1

    def cond(t, h, y, a, g, steps):
        with tf.control_dependencies(
            [tf.debugging.assert_less(steps, max_steps, message="max_num_steps exceeded")]
        ):
            return t > t_lo

    _, _, y, a, g, _ = tf.while_loop(
        cond, body, (t_hi, -tf.cast(h0, dtype), y, a, g, tf.constant(0)), parallel_iterations=1
    )
    return y, a, g


def odeint_adjoint(
    solve: Callable,
    func: Callable,
    y0,
    times: list[float] | tf.Tensor,
    rtol: float,
    atol: float,
    max_num_steps: int | None,
):
    """Runs `solve(y0) -> (states, counts)` (states with a leading time axis over `times`)
    and differentiates it with kseg's adjoint (module docstring) instead of `solve`'s own
    gradient. Gradients reach y0 and the trainable variables `func` reads.

    Returns (states, counts) as `solve` does.
    """
    structure = y0
    flat_y0 = tf.nest.flatten(y0)
    times = tf.convert_to_tensor(times, flat_y0[0].dtype)
    max_steps = max_num_steps if max_num_steps is not None else 2**31 - 1
    counts = []

    @tf.custom_gradient
    def run(*flat):
        states, info = solve(tf.nest.pack_sequence_as(structure, list(flat)))
        counts.append(info)
        flat_states = tf.nest.flatten(states)

        def grad(*d_states, variables=None):
            params = [v for v in variables or [] if v.trainable]
            aug = _Augmented(func, structure, params)
            d_states = [
                tf.zeros_like(s) if d is None else d
                for s, d in zip(flat_states, d_states, strict=True)
            ]

            def interval(i, a, g):
                """From output time i back to i - 1; the state restarts from the stored
                forward output, and the adjoint takes the cotangent of output i - 1."""
                y = [tf.gather(s, i) for s in flat_states]
                _, a, g = _backward_interval(
                    aug, tf.gather(times, i), tf.gather(times, i - 1), y, a, g, rtol, atol,
                    max_steps,
                )  # fmt: skip
                a = [ai + tf.gather(d, i - 1) for ai, d in zip(a, d_states, strict=True)]
                return i - 1, a, g

            # A loop rather than a Python loop over the intervals: one copy of the backward
            # solve in the graph, however many output times.
            _, a, g = tf.while_loop(
                lambda i, a, g: i > 0,
                interval,
                (
                    tf.size(times) - 1,
                    [d[-1] for d in d_states],
                    [tf.zeros_like(p) for p in params],
                ),
                parallel_iterations=1,
            )
            if not variables:
                return a
            by_param = {id(p): gi for p, gi in zip(params, g, strict=True)}
            return a, [by_param.get(id(v)) for v in variables]

        return flat_states, grad

    flat_states = run(*flat_y0)
    return tf.nest.pack_sequence_as(structure, list(flat_states)), counts[0]
