"""Fixed-grid Runge-Kutta differentiated one evaluation at a time (the "checkpoint"
gradient).

Back-propagating the unrolled steps ("direct") keeps every evaluation's activations until
the backward pass reaches it, and TensorFlow sums each weight's gradients from all the
evaluations together at the end, so memory grows with the steps. Here the forward solve
keeps each stage's input state and nothing else of its evaluations. The backward pass
walks the stages from the last to the first, evaluates each again under a tape and takes
its VJP alone; the state's part goes on to the earlier stages through the tableau, the
parameters' part is added to one running sum. One evaluation's activations and one
parameter-sized sum at a time, however many steps, for a second evaluation of each; the
gradients are those of direct back-propagation.

For a step y1 = y + h sum_i b_i k_i with k_i = f(t + c_i h, Y_i) and
Y_i = y + h sum_{j<i} a_ij k_j, given a = dL/dy1: stage i's cotangent is
h b_i a + h sum_{l>i} a_li Ybar_l, where Ybar_l is stage l's VJP to its input, and
dL/dy = a + sum_i Ybar_i. The stages run strictly one after another (control
dependencies): left to itself, TensorFlow would evaluate stages again as soon as their
stored inputs allow, several evaluations' activations resident at once.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from kseg.ode.adjoint import by_time, cotangents, custom_gradient_result


def _add(x: list | None, y: list) -> list:
    return y if x is None else [u + v for u, v in zip(x, y, strict=True)]


def integrate_checkpointed(
    solver, func: Callable, y0: list, times: list[float], steps: int, on_backward=None
):
    """`solver.integrate(func, y0, times, steps)` (`solver` a
    `kseg.ode.solvers.FixedGridSolver`, `y0` a list of tensors, `func(t, y)` taking and
    returning such lists), differentiated by checkpoints (module docstring). Returns
    (the states at `times`, steps taken). `on_backward`, if given, is called during
    differentiation with the backward pass's (evaluations, steps, 0): each evaluation
    one of the function with its VJP."""
    a_, b, c = solver.tableau
    grid = solver.grid(times, steps)
    n = len(y0)

    @tf.custom_gradient
    def run(*flat_y0):
        inputs = []  # the stages' input states: all that the backward pass keeps
        states, _ = solver.integrate(func, list(flat_y0), times, steps, inputs)
        flat_states = [s for state in states for s in state]

        def grad(*d_flat, variables=None):
            params = [v for v in variables or [] if v.trainable]
            d = by_time(cotangents(flat_states, d_flat), n)
            a, g, index = d[-1], [tf.zeros_like(p) for p in params], len(inputs)
            evaluations = 0
            for k in reversed(range(len(grid))):
                for t, dt in reversed(grid[k]):
                    index -= 1
                    k_bar = [[(dt * w) * v for v in a] if w else None for w in b]
                    y_bar = list(a)
                    for i in reversed(range(len(b))):
                        if k_bar[i] is None:
                            continue  # the stage feeds nothing the loss reads
                        with tf.control_dependencies(k_bar[i] + g):
                            yi = [tf.identity(v) for v in inputs[index][i]]
                        with tf.GradientTape(watch_accessed_variables=False) as tape:
                            tape.watch(yi)
                            tape.watch(params)
                            ki = func(t + c[i] * dt, yi)
                        evaluations += 1
                        grads = tape.gradient(
                            ki, yi + params, output_gradients=k_bar[i],
                            unconnected_gradients=tf.UnconnectedGradients.ZERO,
                        )  # fmt: skip
                        g = _add(g, grads[n:])
                        y_bar = _add(y_bar, grads[:n])
                        for j, w in enumerate(a_[i]):
                            if w:
                                k_bar[j] = _add(k_bar[j], [(dt * w) * v for v in grads[:n]])
                    a = y_bar
                a = _add(a, d[k])
            if on_backward is not None:
                on_backward((evaluations, len(inputs), 0))
            return custom_gradient_result(a, g, params, variables)

        return flat_states, grad

    return by_time(run(*y0), n), sum(len(interval) for interval in grid)
