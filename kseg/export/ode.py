"""Export of ODE models: swap adaptive solves for a fixed grid unrolled into plain ops."""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from kseg.ode.callbacks import ode_blocks

FIXED_METHODS = ("rk4", "midpoint", "heun", "euler")


@contextlib.contextmanager
def fixed_grid(model: keras.Model, steps: int, method: str = "rk4"):
    """Within the block, every ODEBlock of `model` uses `method` with `steps` steps; the
    previous solvers come back afterwards. Yields the blocks changed."""
    if method not in FIXED_METHODS:
        raise ValueError(
            f"export needs a fixed-grid method ({', '.join(FIXED_METHODS)}), got {method!r}"
        )
    blocks = ode_blocks(model)
    saved = [(b.method, b.rtol, b.atol, b.steps) for b in blocks]
    for block in blocks:
        block.set_solver(method, steps=steps)
    try:
        yield blocks
    finally:
        for block, (m, rtol, atol, s) in zip(blocks, saved, strict=True):
            block.method, block.rtol, block.atol, block.steps = m, rtol, atol, s


def fixed_grid_error(model: keras.Model, images: np.ndarray, steps: int, method: str = "rk4"):
    """(max |logit difference|, arg-max agreement) of the fixed grid against the model's
    own (adaptive) solvers on `images`."""
    from kseg.export.formats import main_logits

    adaptive = np.asarray(main_logits(model(images, training=False)))
    with fixed_grid(model, steps, method):
        fixed = np.asarray(main_logits(model(images, training=False)))
    return float(np.abs(adaptive - fixed).max()), float(
        np.mean(adaptive.argmax(-1) == fixed.argmax(-1))
    )
