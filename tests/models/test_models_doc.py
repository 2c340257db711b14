"""docs/models.md's example model, run as written: its conventions hold for a model of
the user's own (config from the arguments, a registered name, a .keras round trip)."""

import pathlib
import re

import keras
import numpy as np
import pytest

DOC = pathlib.Path(__file__).parents[2] / "docs" / "models.md"


def test_the_documented_model_registers_saves_and_loads(tmp_path, capsys, model_registry):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    namespace = {}
    exec(blocks[0] + blocks[2], namespace)  # the class, then its registration and use
    assert capsys.readouterr().out.split() == ["8", "3"]
    model = namespace["model"]
    assert model(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 8, 8, 3)
    model.save(tmp_path / "tiny.keras")
    loaded = keras.saving.load_model(tmp_path / "tiny.keras")
    assert loaded.get_config() == model.get_config()
    assert (loaded.width, loaded.input_multiple) == (8, 2)
    assert "tiny_net" in model_registry.list_models()


def test_a_model_that_does_not_store_its_arguments_says_how_to():
    from kseg.models.base import SegmentationModel

    class Forgetful(SegmentationModel):
        def __init__(self, width=4, **kwargs):
            inputs = keras.Input((None, None, 3))
            outputs = keras.layers.Conv2D(width, 1)(inputs)
            super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    with pytest.raises(AttributeError, match=r"'width'.*self._store_config\(locals\(\)\)"):
        Forgetful().get_config()
