"""ContextNet's branch analysis (Poudel et al. 2018, section 4, Fig. 2): each branch
alone as a network, and a trained ContextNet with one branch's output zeroed."""

import json
import os

import numpy as np
import pytest

from kseg.models import ContextNet, create_model


def _scramble(model, prefix: str, seed: int = 0) -> None:
    """New random weights for every layer whose name starts with `prefix` (batch-norm
    scales and variances positive)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith(prefix) and layer.weights:
            layer.set_weights(
                [rng.uniform(0.5, 1.5, w.shape) if w.path.endswith(("gamma", "variance"))
                 else rng.normal(0, 0.5, w.shape) for w in layer.weights]
            )  # fmt: skip


@pytest.mark.parametrize("branch, other", [("deep", "shallow1_"), ("shallow", "deep_")])
def test_zero_branch_removes_exactly_that_branch(branch, other):
    model = ContextNet(num_classes=3, width_multiplier=0.25, aux_head=False)
    _scramble(model, "", seed=2)  # weights that give logits of order one
    x = np.random.default_rng(1).uniform(size=(1, 64, 64, 3)).astype("float32")
    zeroed = ContextNet.from_config({**model.get_config(), "zero_branch": branch})
    for layer in zeroed.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    before = np.asarray(zeroed(x))
    assert not np.allclose(before, np.asarray(model(x)), atol=1e-6)
    _scramble(zeroed, "deep_" if branch == "deep" else "shallow1_")
    np.testing.assert_allclose(np.asarray(zeroed(x)), before, atol=1e-6)  # no influence left
    _scramble(zeroed, other)
    assert not np.allclose(np.asarray(zeroed(x)), before, atol=1e-6)  # the other one counts


def test_single_branch_networks_hold_only_their_branch():
    deep = create_model("contextnet_deep_only", num_classes=19)
    shallow = create_model("contextnet_shallow_only", num_classes=19)
    full = create_model("contextnet_cn14", num_classes=19)
    names = {m.name: {layer.name.split("_")[0] for layer in m.layers} for m in (deep, shallow)}
    assert "shallow1" not in names["contextnet_deep_only"]
    assert "fusion1" not in names["contextnet_deep_only"]
    assert "deep" not in names["contextnet_shallow_only"]
    assert "fusion1" not in names["contextnet_shallow_only"]
    # every weight of a single-branch network is cn14's of the same name and shape
    reference = {w.path: w.shape for w in full.weights}
    for model in (deep, shallow):
        assert all(reference.get(w.path) == w.shape for w in model.weights)
        assert model(np.zeros((1, 64, 128, 3), "float32")).shape == (1, 64, 128, 19)


def test_evaluate_zero_branch_writes_its_own_file(trained, demo_cityscapes, tmp_path):
    from kseg.recipes import cityscapes

    common = ["evaluate", "--data-dir", demo_cityscapes, "--out", str(tmp_path),
              "--checkpoint", os.path.join(trained, "best.keras")]  # fmt: skip
    cityscapes.main(common)
    full = json.load(open(tmp_path / "evaluation_best.json"))
    cityscapes.main([*common, "--zero-branch", "deep"])
    zeroed = json.load(open(tmp_path / "evaluation_best_zero_deep.json"))
    assert zeroed["zero_branch"] == "deep" and "zero_branch" not in full
    assert np.sum(zeroed["confusion"]) == np.sum(full["confusion"])  # the same pixels
    assert zeroed["confusion"] != full["confusion"]
    assert json.load(open(tmp_path / "evaluation_best.json")) == full  # not overwritten
