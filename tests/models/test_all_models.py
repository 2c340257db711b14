"""Every registered model goes through the shared checks at a tiny size."""

import pytest

from kseg.models import create_model, list_models
from tests.helpers import run_model_tests
from tests.tiny_models import TINY


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


def test_a_misspelt_model_argument_is_refused_not_ignored():
    with pytest.raises(TypeError, match="unknown argument.*pathz.*help"):
        create_model(
            "cross_cooperative", num_classes=3, pathz="none", **TINY["cross_cooperative"][0]
        )
