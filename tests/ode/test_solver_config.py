"""kseg.ode.SolverConfig: one value for an ODE block's solve, its validation, its changes
and the upgrade of configs saved before it existed."""

import pytest

from kseg.errors import SolverSettingError, UnknownNameError
from kseg.ode import SolverConfig
from kseg.ode.config import upgrade_config


def test_defaults_changes_and_dicts():
    solver = SolverConfig()
    assert (solver.method, solver.rtol, solver.atol, solver.steps) == ("dopri5", 1e-3, 1e-3, None)
    assert solver.max_num_steps == 1000 and solver.adaptive
    aca = solver.with_changes(gradient="aca", rtol=1e-2)
    assert (aca.method, aca.gradient, aca.rtol, aca.atol) == ("dopri5", "aca", 1e-2, 1e-3)
    # A new method without a gradient takes its own default: "aca" is dopri5's only.
    rk4 = aca.with_changes("rk4", steps=4)
    assert (rk4.method, rk4.gradient, rk4.steps, rk4.rtol) == ("rk4", None, 4, 1e-2)
    assert not rk4.adaptive
    assert SolverConfig.of(rk4.to_dict()) == rk4
    assert SolverConfig.of(None) == SolverConfig()
    # The first step goes to the adaptive methods only; the fixed grids take their steps.
    first = solver.with_changes(first_step=0.5)
    assert first.first_step == 0.5 and first.options() == {"first_step_size": 0.5}
    assert solver.options() is None and SolverConfig.of(first.to_dict()) == first
    assert first.with_changes("rk4", steps=4).options() == {"steps": 4}


def test_mistakes_are_named():
    with pytest.raises(UnknownNameError, match="unknown ODE method 'rk5'"):
        SolverConfig("rk5")
    with pytest.raises(ValueError, match="'rk4' cannot .* gradient='aca'; it offers direct"):
        SolverConfig("rk4", gradient="aca")
    with pytest.raises(ValueError, match=r"unknown solver setting\(s\) \['tol'\]"):
        SolverConfig.of({"tol": 1e-3})
    with pytest.raises(ValueError, match="steps must be a positive int"):
        SolverConfig("euler", steps=0)
    with pytest.raises(ValueError, match="first_step must be positive or None, got -0.1"):
        SolverConfig(first_step=-0.1)


def test_a_grids_steps_on_an_adaptive_method_are_refused_and_dropped_on_a_switch():
    """`SegNode(solver={"steps": 4})` once built a dopri5 solve that ignored the steps (a
    dict's missing fields are SolverConfig's, whose method is dopri5)."""
    with pytest.raises(SolverSettingError, match="steps=4 is a fixed-grid setting and dopri5"):
        SolverConfig.of({"steps": 4})
    rk4 = SolverConfig("rk4", steps=2, gradient="adjoint")
    assert rk4.with_changes("dopri5") == SolverConfig()  # the steps go with the grid
    assert rk4.with_changes("euler") == SolverConfig("euler", steps=2)
    # files saved when switching a grid's block to dopri5 kept the steps: they still load
    saved = {"solver": {"method": "dopri5", "steps": 4, "rtol": 0.01}}
    assert SolverConfig.of(upgrade_config(saved)["solver"]) == SolverConfig(rtol=0.01)


def test_old_configs_gather_their_solver_keys():
    old = {"name": "segnode", "method": "rk4", "steps": 4, "rtol": 0.01, "width": 48}
    assert upgrade_config(old) == {
        "name": "segnode",
        "width": 48,
        "solver": {"method": "rk4", "steps": 4, "rtol": 0.01},
    }
    assert upgrade_config({"solver": {"method": "euler"}}) == {"solver": {"method": "euler"}}
