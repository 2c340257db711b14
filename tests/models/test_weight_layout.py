"""A `.keras` file's weights load by the model's layers: their order, classes and shapes
(names matter to `--init-from` and the ImageNet loader). These digests were taken from
every registered model (tiny configs) before the families moved to one conv-norm-activation
builder and one config style; `check_weight_layout` runs on every model in
test_all_models.py, and a model whose layout changes fails there: files saved before the
change would no longer load."""

import hashlib
import json
import pathlib

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


def check_weight_layout(name: str, model) -> None:
    """`model`, registry `name` at its tiny config with 5 classes, has the layout of before."""
    assert digest(model) == DIGESTS[name], f"{name}'s weight layout changed"
