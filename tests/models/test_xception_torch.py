"""DeepLab's ImageNet weights of Xception-65 in kseg's DeepLab models
(`kseg.models.backbones.xception_torch`), against timm's aligned Xception run in PyTorch
(tests/models/torch_fixtures/make_fixtures.py)."""

import gzip
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from kseg.models import CrossCooperative, DeepLabV3Plus
from kseg.models.backbones.xception_torch import keras_weights
from tests.models.torch_fixtures.torch_state import projections, random_state, write_safetensors

FIXTURES = Path(__file__).parent / "torch_fixtures"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(timm's features, its images, its weights as a .safetensors file)."""
    ref = np.load(FIXTURES / "xception_reference.npz")
    path = tmp_path_factory.mktemp("xception") / "xception.safetensors"
    write_safetensors(path, random_state(json.loads(str(ref["shapes"]))))
    return ref, ref["images"].astype("float32") / 255, str(path)


def _features(model, images, prefix=""):
    """The Xception's last and stride-4 features, projected as the fixture's."""
    names = [f"{prefix}xception_exit2_sep3_pw_relu", f"{prefix}xception_entry2_sep2_pw_bn"]
    outputs = [model.get_layer(n).output for n in names]
    high, low = keras.Model(model.input, outputs).predict(images, verbose=0)
    return high @ projections(high.shape[-1]), low @ projections(low.shape[-1])


def test_xception_with_deeplabs_weights_gives_timms_features(reference):
    """Built with every side of its strided convs padded, kseg's Xception with timm's
    weights gives timm's features to float32 rounding: the last at output stride 16 and
    the stride-4 ones the decoder takes. Built with Keras' padding, or with more middle
    modules than the checkpoint, it refuses them."""
    ref, images, path = reference
    model = DeepLabV3Plus(
        num_classes=5,
        backbone="xception65",
        backbone_depth=1,
        backbone_weights=path,
        convention="pytorch",
    )
    high, low = _features(model, images)
    np.testing.assert_allclose(high, ref["high"], atol=5e-6 * np.abs(ref["high"]).max())
    np.testing.assert_allclose(low, ref["low"], atol=5e-6 * np.abs(ref["low"]).max())
    with pytest.raises(ValueError, match="convention='pytorch'"):
        DeepLabV3Plus(backbone="xception65", backbone_depth=1, backbone_weights=path)
    with pytest.raises(ValueError, match="xception_middle2_sep1_dw/kernel has no tensor"):
        DeepLabV3Plus(
            backbone="xception65", backbone_depth=2, backbone_weights=path, convention="pytorch"
        )


def test_the_cross_cooperative_pairs_top_takes_them_under_its_prefix(reference):
    ref, images, path = reference
    model = CrossCooperative(
        num_classes=5,
        top_depth=1,
        bottom_depth=(1, 1, 1, 1),
        backbone_weights=(path, None),
        convention="pytorch",
    )
    high, _ = _features(model, images, prefix="top_")
    np.testing.assert_allclose(high, ref["high"], atol=5e-6 * np.abs(ref["high"]).max())
    tensors = sum(w.path.startswith("top_xception_") for w in model.weights)
    assert model.backbone_report == [
        f"Backbone top xception65: ImageNet weights from {path} ({tensors} tensors)"
    ]


def test_every_tensor_of_xception65s_imagenet_weights_has_its_place():
    """timm's `xception65` names: each tensor but the classifier goes to one weight of
    the paper's Xception-65 of the same shape, and every Xception weight gets one."""
    with gzip.open(FIXTURES / "xception65_names.json.gz", "rt") as f:
        shapes = json.load(f)
    state = {k: np.broadcast_to(np.float32(0), v) for k, v in shapes.items()}
    weights, unused = keras_weights(state)
    model = DeepLabV3Plus(backbone="xception65", convention="pytorch")
    ours = {w.path: tuple(w.shape) for w in model.weights if w.path.startswith("xception_")}
    assert {p: a.shape for p, a in weights.items()} == ours
    assert unused == ["head.fc.weight", "head.fc.bias"]
