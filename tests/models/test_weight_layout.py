"""A `.keras` file's weights load by the model's layers: their order, names, classes and
shapes. These digests were taken from every registered model (tiny configs) before the
families moved to one conv-norm-activation builder and one config style; a model whose
layout changes fails here, and files saved before the change would no longer load."""

import hashlib
import json
import pathlib

import pytest

from kseg.models import create_model
from tests.tiny_models import TINY

DIGESTS = json.loads((pathlib.Path(__file__).parent / "weight_layouts.json").read_text())


def weight_layout(model) -> list:
    """Each layer with weights: name, class, weight shapes and, for norms, their constants."""
    rows = []
    for layer in model.layers:
        if not layer.weights:
            continue
        row = [layer.name, type(layer).__name__, [list(w.shape) for w in layer.weights]]
        if hasattr(layer, "epsilon"):
            row.append([getattr(layer, "momentum", None), layer.epsilon])
        rows.append(row)
    return rows


def digest(model) -> str:
    return hashlib.sha256(json.dumps(weight_layout(model)).encode()).hexdigest()[:16]


def test_every_model_has_a_digest():
    assert set(DIGESTS) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_weight_layout_is_unchanged(name):
    kwargs, _ = TINY[name]
    assert digest(create_model(name, num_classes=5, **kwargs)) == DIGESTS[name]
