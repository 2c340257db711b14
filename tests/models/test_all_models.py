"""Every registered model goes through the shared checks at a tiny size."""

import pytest

from kseg.models import create_model, list_models
from tests.helpers import run_model_tests

# Tiny configurations for the shared checks: (kwargs, image size). Every registered model
# must have an entry; a model added without one fails `test_every_model_has_a_tiny_config`.
TINY = {
    "contextnet_cn14": ({"width_multiplier": 0.25}, (64, 64)),
    "contextnet_cn12": ({"width_multiplier": 0.25}, (32, 64)),
    # cn18 at 64x64 would shrink its deep branch to 1x1, where a bias before a training-mode
    # batch norm is a constant the norm removes: a genuinely zero gradient.
    "contextnet_cn18": ({"width_multiplier": 0.25}, (128, 128)),
    "contextnet_cn124": ({"width_multiplier": 0.25}, (64, 64)),
    "contextnet_cn14_500": ({}, (64, 64)),
    "contextnet_cn14_160": ({}, (64, 64)),
}


def test_every_model_has_a_tiny_config():
    assert set(list_models()) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_model(name, tmp_path):
    kwargs, size = TINY[name]
    model = create_model(name, num_classes=5, **kwargs)
    run_model_tests(model, num_classes=5, image_size=size, tmp_path=tmp_path)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="contextnet_cn14.*contextnet_cn18"):
        create_model("contextnet_cn99")
