"""`SolverConfig`: how an ODE block solves and how training differentiates the solve, as
one value that ODE blocks and ODE models take and save."""

from __future__ import annotations

import dataclasses

from kseg.errors import SolverSettingError
from kseg.ode.odeint import DEFAULT_MAX_NUM_STEPS
from kseg.ode.solvers import check_gradient, get_solver


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    """The solver of an ODE block.

    Args:
        method: a name from `kseg.ode.SOLVERS`: "dopri5", "bdf" (adaptive) or "euler",
            "midpoint", "heun", "rk4" (fixed grids, unrolled into plain ops).
        rtol, atol: tolerances of the adaptive methods.
        steps: steps of a fixed-grid method over the block's interval (None: 10).
        max_num_steps: an adaptive solve beyond this raises `MaxStepsExceededError`;
            None means unbounded.
        gradient: how training differentiates the solve, None for the method's default
            (see `kseg.ode.odeint`): "adjoint", "aca", "aca_stagewise" or
            "tfp_adjoint" for dopri5,
            "tfp_adjoint" for bdf, "direct", "checkpoint" or "adjoint" for the fixed grids.
        first_step: the first step an adaptive method tries, in the block's time (its
            interval is [0, t1]); None for Hairer's rule (torchdiffeq's). The fixed grids
            ignore it.

    Example:
        >>> SolverConfig("rk4", steps=4)
        >>> ODEBlock(func, solver=SolverConfig(gradient="aca"))
        >>> SegNode(solver={"method": "dopri5", "rtol": 1e-2})  # a dict works as well
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    steps: int | None = None
    max_num_steps: int | None = DEFAULT_MAX_NUM_STEPS
    gradient: str | None = None
    first_step: float | None = None

    def __post_init__(self):
        check_gradient(self.method, self.gradient)  # validates both names
        object.__setattr__(self, "rtol", float(self.rtol))
        object.__setattr__(self, "atol", float(self.atol))
        if self.steps is not None and (isinstance(self.steps, bool) or int(self.steps) < 1):
            raise ValueError(f"steps must be a positive int or None, got {self.steps!r}")
        if self.steps is not None and self.adaptive:
            raise SolverSettingError(
                f"steps={self.steps} is a fixed-grid setting and {self.method} is adaptive; "
                f"name a fixed-grid method with it, e.g. method='rk4', steps={self.steps}"
            )
        if self.first_step is not None:
            if isinstance(self.first_step, bool) or not float(self.first_step) > 0:
                raise ValueError(f"first_step must be positive or None, got {self.first_step!r}")
            object.__setattr__(self, "first_step", float(self.first_step))

    @property
    def adaptive(self) -> bool:
        return get_solver(self.method).adaptive

    @classmethod
    def of(cls, value: SolverConfig | dict | None) -> SolverConfig:
        """`value` as a SolverConfig: itself, the defaults for None, or a dict of fields
        (as `get_config` writes it and `--model-kwargs` passes it)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                fields = ", ".join(f.name for f in dataclasses.fields(cls))
                raise ValueError(f"unknown solver setting(s) {unknown}; a solver takes {fields}")
            return cls(**value)
        raise TypeError(f"solver must be a SolverConfig, a dict or None, got {value!r}")

    def with_changes(
        self,
        method: str | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        steps: int | None = None,
        gradient: str | None = None,
        first_step: float | None = None,
    ) -> SolverConfig:
        """A copy with the given settings changed and the others kept (None keeps one),
        except that a new method without a gradient takes the method's default gradient,
        and a new adaptive method drops the grid's steps."""
        changes = dict(rtol=rtol, atol=atol, steps=steps, gradient=gradient, first_step=first_step)
        changes = {k: v for k, v in changes.items() if v is not None}
        if method is not None:
            changes.update(method=method, gradient=gradient)
            if steps is None and get_solver(method).adaptive:
                changes["steps"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def options(self) -> dict | None:
        """`odeint`'s options for this solver: a fixed grid's steps, an adaptive method's
        first step where one is set."""
        if not self.adaptive:
            return {"steps": self.steps}
        return None if self.first_step is None else {"first_step_size": self.first_step}


# The keyword arguments by which models and blocks took their solver before SolverConfig;
# `.keras` files saved then hold them in their configs.
_OLD_KEYS = ("method", "rtol", "atol", "steps", "max_num_steps", "gradient")


def upgrade_config(config: dict) -> dict:
    """A block's or model's saved config with the solver settings of older files (separate
    keys) gathered into one "solver" entry, and without steps on an adaptive method."""
    config = dict(config)
    old = {k: config.pop(k) for k in _OLD_KEYS if k in config}
    if old:
        config["solver"] = {**(config.get("solver") or {}), **old}
    solver = config.get("solver")
    if isinstance(solver, dict) and solver.get("steps") is not None:
        # Before steps were refused on adaptive methods, switching a grid's block to one
        # kept them (unused) and files saved it so.
        if get_solver(solver.get("method", SolverConfig.method)).adaptive:
            config["solver"] = {**solver, "steps": None}
    return config
