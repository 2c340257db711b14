"""Filter pruning: the lowest-L1 filters go, coupled channels go together, and the smaller
model computes exactly what the original computes with those channels switched off."""

import keras
import numpy as np
import pytest

from kseg.export import plan_pruning, prune_filters, width_schedule
from kseg.models import ContextNet
from kseg.models.base import GraphImageModel
from kseg.utils.summary import count_macs, count_params


def _shapes(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers}


def _randomise_batch_norm(model, seed=0):
    """Non-trivial moving statistics, so that a wrongly sliced BN changes the output."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 1.5, var.shape),
                ]
            )


def test_a_2x_contextnet_pruned_by_half_has_exactly_the_1x_architecture():
    """Section 3.2.2 prunes a twice-as-wide ContextNet down to the 1x size: every layer of
    the result must have the 1x model's weight shapes (Table 4: 0.85M parameters)."""
    wide = ContextNet(num_classes=19, width_multiplier=2.0)
    slim = prune_filters(wide, ratio=0.5)
    reference = ContextNet(num_classes=19, width_multiplier=1.0)
    assert _shapes(slim) == _shapes(reference)
    assert count_params(slim) == count_params(reference)
    assert count_params(slim) < 0.3 * count_params(wide)
    assert count_macs(slim, (256, 512, 3)) < 0.35 * count_macs(wide, (256, 512, 3))
    assert isinstance(slim, GraphImageModel) and slim.input_multiple == 32
    assert slim.task == "segmentation"
    # the progressive schedule of the paper lands on the same shapes
    stepped = wide
    for ratio in width_schedule(2.0, (1.5, 1.25, 1.0)):
        stepped = prune_filters(stepped, ratio=ratio)
    assert _shapes(stepped) == _shapes(reference)


def test_the_pruned_model_equals_the_original_with_the_removed_channels_zeroed():
    """Second implementation: keep the full model and zero every weight that belongs to a
    removed channel (filters, biases, depthwise kernels, BN parameters). Removed channels
    are then exactly 0 everywhere, so the outputs must match the pruned model's."""
    keras.utils.set_random_seed(1)
    model = ContextNet(num_classes=5, width_multiplier=0.5, dropout=0.0)
    _randomise_batch_norm(model)
    plan = plan_pruning(model).set_ratio(0.4)
    pruned = prune_filters(model, ratio=0.4)
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    for layer in masked.layers:
        for weight, weight_axes in zip(layer.weights, plan.axes.get(layer.name, []), strict=False):
            value = np.asarray(weight)
            for axis, spec in weight_axes.items():
                drop = np.setdiff1d(np.arange(value.shape[axis]), plan.kept(spec))
                index = [slice(None)] * value.ndim
                index[axis] = drop
                value[tuple(index)] = 0
            weight.assign(value)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 64, 128, 3)).astype("float32")
    full, small = masked(x), pruned(x)
    for key in ("logits", "aux_logits"):
        np.testing.assert_allclose(small[key], full[key], atol=2e-5, rtol=1e-4)
    assert np.abs(np.asarray(model(x)["logits"]) - np.asarray(full["logits"])).max() > 1e-3


def _toy_model():
    """x -> a(4) -> BN -> relu -> b(4); a + b -> concat with c(2) -> classifier(3).

    Filter L1 norms are set by hand: a = [1, 9, 2, 8], b = [9, 1, 8, 2], so a and b alone
    would keep different channels, while their sum (the group) is [10, 10, 10, 10] plus the
    ties broken by a small extra on channels 0 and 2. c = [5, 1].
    """
    x = keras.Input((8, 8, 3), name="image")
    a = keras.layers.Conv2D(4, 1, use_bias=False, name="a")(x)
    h = keras.layers.BatchNormalization(name="a_bn")(a)
    h = keras.layers.ReLU(name="a_relu")(h)
    b = keras.layers.Conv2D(4, 1, use_bias=False, name="b")(h)
    s = keras.layers.Add(name="add")([a, b])
    c = keras.layers.Conv2D(2, 1, use_bias=False, name="c")(x)
    y = keras.layers.Concatenate(name="cat")([s, c])
    y = keras.layers.Conv2D(3, 1, name="classifier")(y)
    model = keras.Model(x, y)

    def filters(layer, norms, fan_in):
        kernel = np.zeros((1, 1, fan_in, len(norms)), "float32")
        kernel[0, 0, 0, :] = norms  # L1 of filter j is norms[j]
        layer.set_weights([kernel])

    filters(model.get_layer("a"), [1, 9, 2, 8], 3)
    filters(model.get_layer("b"), [9.5, 1, 8.5, 2], 4)
    filters(model.get_layer("c"), [5, 1], 3)
    return model


def test_groups_and_lowest_l1_choice_on_a_hand_built_graph():
    plan = plan_pruning(_toy_model())
    by_producers = {tuple(g.producers): g for g in plan.groups}
    assert set(by_producers) == {("a", "b"), ("c",), ("classifier",), ()}
    residual = by_producers[("a", "b")]
    assert residual.prunable
    np.testing.assert_allclose(residual.importance, [10.5, 10, 10.5, 10])
    assert not by_producers[("classifier",)].prunable  # the model's output
    assert by_producers[()].frozen == ["model input"]

    toy = _toy_model()
    pruned = prune_filters(toy, ratio=0.5)
    # the residual group keeps channels 0 and 2 in a, b, the BN and the classifier's input;
    # c keeps its filter 0
    assert pruned.get_layer("a").kernel.shape == (1, 1, 3, 2)
    np.testing.assert_array_equal(pruned.get_layer("a").kernel[0, 0, 0], [1, 2])
    np.testing.assert_array_equal(pruned.get_layer("b").kernel[0, 0, 0], [9.5, 8.5])
    np.testing.assert_array_equal(pruned.get_layer("c").kernel[0, 0, 0], [5])
    original = toy.get_layer("classifier").kernel.numpy()
    np.testing.assert_array_equal(
        pruned.get_layer("classifier").kernel.numpy(), original[:, :, [0, 2, 4], :]
    )
    assert pruned.get_layer("a_bn").gamma.shape == (2,)


def test_layers_the_pruner_does_not_know_keep_their_channels():
    @keras.saving.register_keras_serializable(package="kseg_test")
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

    x = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(x)
    y = Scale(name="scale")(a)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(y)
    y = keras.layers.Conv2D(2, 1, name="out")(b)
    pruned = prune_filters(keras.Model(x, y), ratio=0.5)
    assert pruned.get_layer("a").kernel.shape[-1] == 8  # feeds Scale
    assert pruned.get_layer("b").kernel.shape[-1] == 4
    assert pruned.get_layer("out").kernel.shape[-2] == 4
    reasons = [g.frozen for g in plan_pruning(keras.Model(x, y)).groups if g.frozen]
    assert ["Scale 'scale'"] in reasons


def test_target_params_and_round_trip(tmp_path):
    model = ContextNet(num_classes=19)
    pruned = prune_filters(model, target_params=500_000, round_to=8)
    assert 450_000 < count_params(pruned) <= 500_000
    convs = [layer for layer in pruned.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(c.filters == 19 for c in convs if c.name.endswith("classifier"))
    assert all(c.filters % 8 == 0 for c in convs if not c.name.endswith("classifier"))
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, GraphImageModel) and reloaded.input_multiple == 32
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(reloaded(x)["logits"], pruned(x)["logits"], atol=1e-5)
    with pytest.raises(ValueError, match="takes images whose height and width are multiples"):
        reloaded(np.zeros((1, 50, 64, 3), "float32"))
    with pytest.raises(ValueError, match="below what pruning can reach"):
        prune_filters(model, target_params=100)
    with pytest.raises(ValueError, match="exactly one of"):
        prune_filters(model)
    assert prune_filters(model, ratio=0.0).count_params() == model.count_params()


def test_a_pruned_classifier_stays_a_classifier(tmp_path):
    """ResNetGN: GroupNorm ties each channel to its group's statistics, so the pruner keeps
    those channels and says why; the result is still a classifier that saves and reloads."""
    from kseg.export.pruning import plan_pruning
    from kseg.models import ResNetGN

    model = ResNetGN(num_classes=10, width=32, stem_width=16, blocks=2)
    frozen = [f for g in plan_pruning(model).groups for f in g.frozen]
    assert "GroupNormalization 'down1_norm1'" in frozen
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    slim = prune_filters(model, ratio=0.5)
    assert slim.task == "classification" and count_params(slim) == count_params(model)
    np.testing.assert_allclose(slim(x), model(x), atol=1e-5)
    path = str(tmp_path / "slim.keras")
    slim.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.task == "classification"
    np.testing.assert_allclose(reloaded(x), slim(x), atol=1e-5)
