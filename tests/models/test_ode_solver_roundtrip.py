"""A solver set on a model's ODE blocks (`ODEBlock.set_solver`, as the exporter's fixed
grid does) survives a `.keras` round trip, for every registered ODE model."""

import numpy as np
import pytest

from kseg.models import create_model, list_models
from kseg.models.loading import load_model
from kseg.ode import ode_blocks
from tests.tiny_models import TINY

ODE_MODELS = [n for n in list_models() if n in TINY and "steps" in TINY[n][0]]


def test_every_ode_model_is_checked():
    assert {"segnode", "segnode_ocr", "unode", "nodes_unet", "res_ode_net"} <= set(ODE_MODELS)


@pytest.mark.parametrize("name", ODE_MODELS)
def test_set_solver_survives_a_keras_round_trip(name, tmp_path):
    kwargs, (h, w) = TINY[name]
    model = create_model(name, num_classes=3, **{**kwargs, "method": "euler", "steps": 2})
    for block in ode_blocks(model):
        block.set_solver("rk4", steps=3, rtol=0.05)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = load_model(path)
    settings = {(b.method, b.steps, b.rtol) for b in ode_blocks(loaded)}
    assert settings == {("rk4", 3, 0.05)}
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
