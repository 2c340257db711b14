"""Every registered model goes through the shared checks at a tiny size."""

import pytest

from kseg.models import create_model, list_models
from tests.helpers import run_model_tests
from tests.models.test_weight_layout import check_weight_layout
from tests.tiny_models import CHECKED, TINY, WIDTH_VARIANTS


def test_every_model_has_a_tiny_config():
    assert set(list_models()) == set(TINY)


def check_arguments(model, kwargs) -> None:
    """The config holds the model's arguments, those given overriding the registered ones."""
    config = model.get_config()
    assert config["num_classes"] == model.num_classes == 5
    for key, value in kwargs.items():
        if key == "solver":
            assert config[key] == {**config[key], **value}
        else:
            assert config[key] == getattr(model, key) == value


@pytest.mark.parametrize("name", CHECKED)
def test_model(name, tmp_path):
    kwargs, size = TINY[name]
    model = create_model(name, num_classes=5, **kwargs)
    check_arguments(model, kwargs)
    check_weight_layout(name, model)
    run_model_tests(model, num_classes=5, image_size=size, tmp_path=tmp_path)


def _graph(model):
    """Each layer's configuration and the layers it reads from."""
    return [
        (layer.get_config(), [n.operation.name for n in node.parent_nodes])
        for layer in model.layers
        for node in layer._inbound_nodes
    ]


@pytest.mark.parametrize("name", sorted(WIDTH_VARIANTS))
def test_a_width_variant_is_its_base_graph_at_another_width(name):
    base, kwargs = WIDTH_VARIANTS[name]
    tiny = create_model(name, num_classes=5, **TINY[name][0])
    check_arguments(tiny, TINY[name][0])
    check_weight_layout(name, tiny)
    variant = create_model(name, num_classes=5)
    same = create_model(base, num_classes=5, **kwargs)
    assert _graph(variant) == _graph(same)
    assert [w.shape for w in variant.weights] == [w.shape for w in same.weights]
    assert variant.count_params() != create_model(base, num_classes=5).count_params()


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="contextnet_cn14.*contextnet_cn18"):
        create_model("contextnet_cn99")


def test_a_misspelt_model_argument_is_refused_not_ignored():
    with pytest.raises(TypeError, match="unknown argument.*pathz.*help"):
        create_model(
            "cross_cooperative", num_classes=3, pathz="none", **TINY["cross_cooperative"][0]
        )
