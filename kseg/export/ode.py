"""Export of ODE models: swap adaptive solves for a fixed grid unrolled into plain ops,
chosen by hand or as the cheapest grid that agrees with the adaptive solve (`choose_grid`),
and trace the blocks without their solver counts (`without_counts`)."""

from __future__ import annotations

import contextlib
import dataclasses

import keras
import numpy as np

from kseg.ode.callbacks import ode_blocks
from kseg.ode.odeint import DEFAULT_STEPS

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
    saved = [block.solver for block in blocks]
    for block in blocks:
        block.set_solver(method, steps=steps)
    try:
        yield blocks
    finally:
        for block, solver in zip(blocks, saved, strict=True):
            block.solver = solver


def own_solve(blocks: list) -> str:
    """What a fixed grid is measured against, in words: the adaptive solve of a model's
    ODE `blocks`, or the grid they already use (a model trained on a grid, as SegNode by
    default)."""
    solvers = {block.solver for block in blocks}
    if not solvers or any(solver.adaptive for solver in solvers):
        return "the adaptive solve"
    grids = sorted(
        f"{s.method} x {s.steps or DEFAULT_STEPS} step{'s' * (s.steps != 1)}" for s in solvers
    )
    return f"the model's own grid ({', '.join(grids)})"


@contextlib.contextmanager
def without_counts(model: keras.Model):
    """Within the block, no ODEBlock of `model` writes its solver counts
    (`ODEBlock.record_counts`), as the export traces it: the writes would be resource
    variables in the exported graphs."""
    blocks = ode_blocks(model)
    saved = [block.record_counts for block in blocks]
    for block in blocks:
        block.record_counts = False
    try:
        yield
    finally:
        for block, record_counts in zip(blocks, saved, strict=True):
            block.record_counts = record_counts


def fixed_grid_error(model: keras.Model, images: np.ndarray, steps: int, method: str = "rk4"):
    """(max |logit difference|, arg-max agreement) of the fixed grid against the model's
    own solvers (adaptive, or the grid it was trained on) on `images`."""
    from kseg.export.formats import main_logits

    adaptive = np.asarray(main_logits(model(images, training=False)))
    with fixed_grid(model, steps, method):
        fixed = np.asarray(main_logits(model(images, training=False)))
    return float(np.abs(adaptive - fixed).max()), float(
        np.mean(adaptive.argmax(-1) == fixed.argmax(-1))
    )


@dataclasses.dataclass(frozen=True)
class GridTrial:
    """One fixed grid measured against the model's own solve."""

    method: str
    steps: int
    evaluations: int  # derivative evaluations per ODE block: steps x the method's stages
    agreement: float  # arg-max agreement with the model's own solve
    max_abs_logit_diff: float
    seconds: float  # median Keras time of one image on this grid


def grid_candidates(methods=("euler", "midpoint", "rk4"), steps=(1, 2, 4, 8)):
    """(method, steps) pairs, cheapest first (evaluations; higher order first on ties)."""
    from kseg.ode.solvers import get_solver

    pairs = [(m, n) for m in methods for n in steps]
    return sorted(pairs, key=lambda p: (get_solver(p[0]).evaluations * p[1], -_order(p[0])))


def _order(method: str) -> int:
    from kseg.ode.solvers import get_solver

    return get_solver(method).order


def choose_grid(
    model: keras.Model, images: np.ndarray, min_agreement: float = 0.995, candidates=None
) -> tuple[GridTrial | None, list[GridTrial]]:
    """Tries fixed grids on `images` against the model's own solve and returns
    (the cheapest trial whose arg-max agreement reaches `min_agreement`, or None; every
    trial, cheapest first). `candidates`: (method, steps) pairs, default
    `grid_candidates()` (euler, midpoint, rk4 x 1, 2, 4, 8 steps)."""
    import time

    from kseg.export.formats import main_logits
    from kseg.ode.solvers import get_solver

    adaptive = np.asarray(main_logits(model(images, training=False)))
    trials = []
    for method, steps in candidates or grid_candidates():
        with fixed_grid(model, steps, method):
            fixed = np.asarray(main_logits(model(images, training=False)))
            times = []
            for _ in range(3):
                start = time.perf_counter()
                model(images[:1], training=False)
                times.append(time.perf_counter() - start)
        trials.append(
            GridTrial(
                method,
                steps,
                get_solver(method).evaluations * steps,
                float(np.mean(adaptive.argmax(-1) == fixed.argmax(-1))),
                float(np.abs(adaptive - fixed).max()),
                float(np.median(times)),
            )  # fmt: skip
        )
    chosen = next((t for t in trials if t.agreement >= min_agreement), None)
    return chosen, trials


def grid_table(trials: list[GridTrial], chosen: GridTrial | None) -> str:
    lines = [f"{'grid':14s} {'evaluations':>11s} {'agreement':>10s} {'max|dlogit|':>11s} "
             f"{'Keras s':>8s}"]  # fmt: skip
    for t in trials:
        mark = "  <- chosen" if t == chosen else ""
        lines.append(
            f"{f'{t.method} x {t.steps}':14s} {t.evaluations:11d} {100 * t.agreement:9.2f}% "
            f"{t.max_abs_logit_diff:11.2e} {t.seconds:8.3f}{mark}"
        )
    return "\n".join(lines)
