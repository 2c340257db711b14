"""A solver set on a model's ODE blocks (`set_solver`, as the exporter's fixed grid does)
survives a `.keras` round trip, for every registered ODE model; files saved before
`SolverConfig` (their solver as separate config keys) load with their solver."""

import numpy as np
import pytest

from kseg.models import create_model, list_models
from kseg.models.loading import load_model
from kseg.ode import SolverConfig, ode_blocks
from tests.tiny_models import TINY

ODE_MODELS = [n for n in list_models() if n in TINY and "solver" in TINY[n][0]]


def test_every_ode_model_is_checked():
    assert {"segnode", "segnode_ocr", "unode", "nodes_unet", "res_ode_net"} <= set(ODE_MODELS)


@pytest.mark.parametrize("name", ODE_MODELS)
def test_set_solver_survives_a_keras_round_trip(name, tmp_path):
    kwargs, (h, w) = TINY[name]
    model = create_model(name, num_classes=3, **kwargs)
    model.set_solver("rk4", steps=3, rtol=0.05, first_step=0.5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = load_model(path)
    want = SolverConfig("rk4", steps=3, rtol=0.05, first_step=0.5)
    assert {b.solver for b in ode_blocks(loaded)} == {want} and loaded.solver == want
    x = np.random.default_rng(0).uniform(size=(1, h, w, 3)).astype("float32")
    out, back = model(x, training=False), loaded(x, training=False)
    out = out["logits"] if isinstance(out, dict) else out
    back = back["logits"] if isinstance(back, dict) else back
    np.testing.assert_allclose(np.asarray(back), np.asarray(out), atol=1e-5)


def test_blocks_with_different_solvers_are_refused_at_save(tmp_path):
    kwargs, _ = TINY["unode"]
    model = create_model("unode", num_classes=3, **kwargs)
    ode_blocks(model)[0].set_solver("rk4", steps=3)
    with pytest.raises(ValueError, match="different solvers"):
        model.save(str(tmp_path / "m.keras"))


def test_files_saved_before_solver_config_load_with_their_solver(tmp_path):
    """Before SolverConfig, models and blocks saved their solver as separate config keys;
    such a file is rewritten here from a current one and must load on its solver."""
    import json
    import zipfile

    kwargs, (h, w) = TINY["unode"]
    model = create_model("unode", num_classes=3, **kwargs)
    model.set_solver("rk4", steps=3)
    path, old = tmp_path / "m.keras", tmp_path / "old.keras"
    model.save(path)

    def spread(config):
        """The solver entries of every config in the tree back as separate keys (those of
        then: first_step came after SolverConfig)."""
        if isinstance(config, dict):
            config = {k: spread(v) for k, v in config.items()}
            solver = config.pop("solver", None)
            if isinstance(solver, dict):
                config.update({k: v for k, v in solver.items() if k != "first_step"})
        elif isinstance(config, list):
            config = [spread(v) for v in config]
        return config

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "config.json":
                data = json.dumps(spread(json.loads(data))).encode()
                assert b'"solver"' not in data and b'"method": "rk4"' in data
            dst.writestr(item, data)
    loaded = load_model(str(old))
    assert {b.solver for b in ode_blocks(loaded)} == {SolverConfig("rk4", steps=3)}
    x = np.random.default_rng(0).uniform(size=(1, h, w, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5)
