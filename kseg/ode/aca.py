"""Dormand-Prince differentiated by checkpoints of its accepted steps, in the manner of ACA
(Zhuang et al. 2020, "Adaptive Checkpoint Adjoint Method for Gradient Estimation in
Neural ODE", arXiv:2006.02493).

The forward solve keeps the start (t, h, y) of every accepted step and nothing else of the
solve. The backward pass walks the accepted steps from the last to the first: it runs one
step again under a gradient tape, from its stored start with its stored size, and
back-propagates the cotangent through that step alone. The gradients are those of the
discrete solution the forward solve computed (step sizes held constant, rejected attempts
left out), not of the exact ODE flow that the adjoint method integrates backwards; and the
backward pass takes exactly as many steps as the forward accepted, with no step-size search
and no rejections.

Memory: one state per accepted step (SegNode's four streams are 1/170 of what a step's
evaluations keep for back-propagation) plus the activations of the six stage evaluations
of one step; so more than the adjoint's one evaluation at a time, and independent of the
number of steps. With `stagewise` (gradient "aca_stagewise") a step is back-propagated one
stage at a time instead: its stage values are evaluated again without a tape (five
evaluations; the sixth feeds no other stage), then each stage's VJP is taken alone, from
the last stage to the first, each adding its share to the earlier stages' cotangents. So
one evaluation's activations at a time, as the adjoint, for five more evaluations per
step. `bench/segnode_memory.py` measures all three.

The step control is `kseg.ode.dopri`'s (Hairer's first step, torchdiffeq's error norm and
factors), run in a loop of its own here rather than tfp's, because tfp's solver does not
expose its accepted steps. Each step stops at the next output time, so the outputs are
step ends, not interpolations.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from kseg.ode.adjoint import (
    _A,
    _B,
    _ERROR,
    _SOLUTION,
    ERROR_ORDER,
    MAX_FACTOR,
    MIN_FACTOR,
    SAFETY,
    _combine,
    cotangents,
    custom_gradient_result,
)
from kseg.ode.dopri import initial_step_size, scaled_error_rms, step_factor


def _stages(func, t, h, y, k1, count: int = 6):
    """Stages 1-`count` of a Dormand-Prince step from (t, y) with step h, k1 = f(t, y)
    given."""
    ks = [k1]
    for i in range(1, count):
        ks.append(func(t + _A[i] * h, _combine(y, h, _B[i - 1], ks)))
    return ks


def _step_vjp(func, t, h, y, a, params):
    """(dL/dy, dL/dparams) of one Dormand-Prince step y1 = y + h sum_i c_i k_i from (t, y)
    with step h, given a = dL/dy1, back-propagated through the step's six evaluations at
    once (their activations all kept)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(y)
        tape.watch(params)
        ks = _stages(func, t, h, y, func(t, y))
        y1 = _combine(y, h, _SOLUTION, ks)
    grads = tape.gradient(
        y1, y + params, output_gradients=a, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return grads[: len(y)], grads[len(y) :]


def _step_vjp_stagewise(func, t, h, y, a, params):
    """`_step_vjp`, one stage at a time. With y_i = y + h sum_{j<i} b_ij k_j the stages'
    inputs and k_i = f(t_i, y_i): dL/dy = a + sum_i y_i', where y_i' is the VJP of stage i
    with its cotangent k_i' = h c_i a + h sum_{l>i} b_li y_l', taken from the last stage
    down so that each k_i' is complete when its VJP runs."""
    ks = _stages(func, t, h, y, func(t, y), count=5)  # k_6 makes no stage's input
    # k_i' starts as h c_i a; stage 2 (c = 0) gets its k_i' from later stages alone.
    k_bar = [[(h * c) * aj for aj in a] if c else None for c in _SOLUTION[:6]]
    y_bar, g = list(a), None
    for i in reversed(range(6)):
        # One stage at a time: without this dependency, TF may start an earlier stage's
        # forward under its tape while a later one is back-propagated, two evaluations'
        # activations resident at once. Each stage's input is formed only now, from the
        # k_j that are kept until then.
        with tf.control_dependencies(y_bar + (g or [])):
            yi = _combine(y, h, _B[i - 1], ks) if i else [tf.identity(v) for v in y]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(yi)
            tape.watch(params)
            ki = func(t + _A[i] * h, yi)
        grads = tape.gradient(
            ki, yi + params, output_gradients=k_bar[i],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )  # fmt: skip
        yi_bar, gi = grads[: len(yi)], grads[len(yi) :]
        y_bar = [u + v for u, v in zip(y_bar, yi_bar, strict=True)]
        g = gi if g is None else [u + v for u, v in zip(g, gi, strict=True)]
        for j, b in enumerate(_B[i - 1] if i else []):
            if b:
                share = [(h * b) * v for v in yi_bar]
                k_bar[j] = (
                    share
                    if k_bar[j] is None
                    else [u + v for u, v in zip(k_bar[j], share, strict=True)]
                )
    return y_bar, g


def _attempt(func, t, h, y, k1, rtol, atol):
    """One step attempt: (solution, f at the solution, scaled error ratio)."""
    ks = _stages(func, t, h, y, k1)
    y1 = _combine(y, h, _SOLUTION, ks)
    k7 = func(t + h, y1)
    error = [
        h * tf.add_n([w * k[j] for w, k in zip(_ERROR, [*ks, k7], strict=True) if w])
        for j in range(len(y))
    ]
    return y1, k7, scaled_error_rms(error, y, y1, rtol, atol)


def odeint_aca(
    func: Callable,
    y0,
    times: tf.Tensor,
    rtol: float,
    atol: float,
    max_num_steps: int | None,
    on_backward: Callable | None = None,
    first_step: float | None = None,
    stagewise: bool = False,
):
    """Solves dy/dt = func(t, y) by Dormand-Prince at the increasing `times` (the first is
    the initial time) and differentiates the solve by its accepted steps (module
    docstring). Gradients reach y0 and the trainable variables `func` reads. The first
    step tried is `first_step`, or Hairer's rule's if None.

    Returns (states with a leading time axis over `times`, (evaluations, accepted,
    rejected)); `on_backward`, if given, is called during differentiation with the
    backward pass's (evaluations, accepted, rejected): six evaluations, each with its
    VJP, per accepted step, and with `stagewise` five more without, none rejected.
    """
    structure = y0
    flat_y0 = [tf.convert_to_tensor(v) for v in tf.nest.flatten(y0)]
    dtype = flat_y0[0].dtype
    times = tf.cast(tf.convert_to_tensor(times), dtype)
    rtol_t, atol_t = tf.constant(rtol, dtype), tf.constant(atol, dtype)
    max_steps = max_num_steps if max_num_steps is not None else 2**31 - 1
    n_out = tf.size(times)

    def flat_func(t, y):
        return tf.nest.flatten(func(t, tf.nest.pack_sequence_as(structure, list(y))))

    counts = []

    @tf.custom_gradient
    def run(*flat):
        y = list(flat)
        f0 = flat_func(times[0], y)
        if first_step is None:
            h0 = initial_step_size(flat_func, times[0], y, f0, ERROR_ORDER, rtol_t, atol_t)
        else:
            h0 = tf.constant(first_step, dtype)
        outputs = [tf.TensorArray(dtype, size=n_out, element_shape=v.shape).write(0, v) for v in y]
        starts = [
            tf.TensorArray(dtype, size=0, dynamic_size=True, element_shape=v.shape) for v in y
        ]
        step_log = tf.TensorArray(dtype, size=0, dynamic_size=True, element_shape=(3,))

        def cond(t, h, y, f, j, attempts, accepted, outputs, starts, step_log):
            with tf.control_dependencies(
                [tf.debugging.assert_less(attempts, max_steps, message="max_num_steps exceeded")]
            ):
                return j < n_out

        def body(t, h, y, f, j, attempts, accepted, outputs, starts, step_log):
            target = times[j]
            last = h >= target - t  # this step reaches (or would pass) the next output time
            h_step = tf.minimum(h, target - t)
            y1, f1, ratio = _attempt(flat_func, t, h_step, y, f, rtol_t, atol_t)
            accept = ratio <= 1
            factor = step_factor(
                ratio, accept, ERROR_ORDER, SAFETY, tf.constant(MIN_FACTOR, dtype), MAX_FACTOR
            )
            hits = accept & last
            # The output index this step ends on, or -1.
            marker = tf.where(hits, tf.cast(j, dtype), tf.constant(-1.0, dtype))

            def record():
                return (
                    [s.write(accepted, v) for s, v in zip(starts, y, strict=True)],
                    step_log.write(accepted, tf.stack([t, h_step, marker])),
                )

            new_starts, new_log = tf.cond(accept, record, lambda: (starts, step_log))
            new_outputs = tf.cond(
                hits,
                lambda: [o.write(j, v) for o, v in zip(outputs, y1, strict=True)],
                lambda: outputs,
            )
            y_next, f_next = tf.cond(accept, lambda: (y1, f1), lambda: (y, f))
            t_next = tf.where(accept, tf.where(last, target, t + h_step), t)
            return (
                t_next,
                h_step * factor,
                y_next,
                f_next,
                j + tf.cast(hits, tf.int32),
                attempts + 1,
                accepted + tf.cast(accept, tf.int32),
                new_outputs,
                new_starts,
                new_log,
            )

        zero = tf.constant(0)
        loop = tf.while_loop(
            cond,
            body,
            (times[0], tf.cast(h0, dtype), y, f0, tf.constant(1), zero, zero, outputs, starts,
             step_log),
            parallel_iterations=1,
        )  # fmt: skip
        _, _, _, _, _, attempts, accepted, outputs, starts, step_log = loop
        states = [o.stack() for o in outputs]
        # f0, Hairer's trial evaluation if it chose the first step, six per attempt.
        first = 2 if first_step is None else 1
        counts.append((first + 6 * attempts, accepted, attempts - accepted))

        def grad(*d_states, variables=None):
            params = [v for v in variables or [] if v.trainable]
            d_states = cotangents(states, d_states)
            log = step_log.stack()

            def back(k, a, g):
                t, h, marker = log[k, 0], log[k, 1], log[k, 2]
                y = [s.read(k) for s in starts]
                # The cotangent of the output this step ends on joins the adjoint first.
                a = tf.cond(
                    marker >= 0,
                    lambda: [
                        ai + tf.gather(d, tf.cast(marker, tf.int32))
                        for ai, d in zip(a, d_states, strict=True)
                    ],
                    lambda: a,
                )
                step_vjp = _step_vjp_stagewise if stagewise else _step_vjp
                a, d_params = step_vjp(flat_func, t, h, y, a, params)
                return k - 1, a, [gi + di for gi, di in zip(g, d_params, strict=True)]

            _, a, g = tf.while_loop(
                lambda k, a, g: k >= 0,
                back,
                (accepted - 1, [tf.zeros_like(d[0]) for d in d_states],
                 [tf.zeros_like(p) for p in params]),
                parallel_iterations=1,
            )  # fmt: skip
            a = [ai + d[0] for ai, d in zip(a, d_states, strict=True)]
            if on_backward is not None:
                on_backward(((11 if stagewise else 6) * accepted, accepted, tf.constant(0)))
            return custom_gradient_result(a, g, params, variables)

        return states, grad

    flat_states = run(*flat_y0)
    return tf.nest.pack_sequence_as(structure, list(flat_states)), counts[0]
