"""Weight decay as the papers' frameworks apply it: coupled L2 for SGD, RMSprop and Adam
(PyTorch's `weight_decay`, TF-slim's regularisers), decoupled for AdamW; each optimiser's
first steps against their closed form."""

import collections
import dataclasses

import keras
import numpy as np
import pytest

from kseg.train.presets import TrainingPreset, apply_weight_decay, preset_for

LR, WD = 0.1, 0.05
X = np.array([[1.0, 2.0], [0.5, -1.0], [-1.5, 0.3]], "float32")
Y = np.array([[1.0], [-0.5], [0.2]], "float32")
W0 = np.array([[0.4], [-0.3]], "float32")


def _preset(optimizer: str, **kwargs) -> TrainingPreset:
    return TrainingPreset(
        name="t", source="test", optimizer=optimizer, learning_rate=LR, poly_power=1.0,
        epochs=1, batch_size=3, weight_decay=WD, schedule="plateau", **kwargs,
    )  # fmt: skip


def _train(preset: TrainingPreset, steps: int) -> np.ndarray:
    """A linear model (no bias) fitted with the preset by mean squared error."""
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="dense")(inputs))
    model.get_layer("dense").kernel.assign(W0)
    apply_weight_decay(model, preset)
    model.compile(optimizer=preset.make_optimizer(100), loss="mse")
    for _ in range(steps):
        model.train_on_batch(X, Y)
    return model.get_layer("dense").kernel.numpy()


def _grad(w):
    return 2 * X.T @ (X @ w - Y) / len(X)


def test_sgd_momentum_decays_coupled_as_pytorch():
    """PyTorch's SGD: d = g + wd * w; buf = momentum * buf + d; w -= lr * buf."""
    w, buf = W0.astype("float64"), 0
    for _ in range(3):
        buf = 0.9 * buf + _grad(w) + WD * w
        w = w - LR * buf
    np.testing.assert_allclose(_train(_preset("sgd", momentum=0.9), 3), w, rtol=1e-5)


def test_adam_decays_coupled_and_adamw_decoupled():
    """PyTorch's Adam adds wd * w to the gradient before the moments; AdamW shrinks the
    weight by lr * wd outside them."""

    def adam(coupled: bool, steps: int = 3, eps: float = 1e-7):
        w, m, v = W0.astype("float64"), 0, 0
        for t in range(1, steps + 1):
            g = _grad(w) + (WD * w if coupled else 0)
            if not coupled:
                w = w - LR * WD * w
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            alpha = LR * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
            w = w - alpha * m / (np.sqrt(v) + eps)
        return w

    np.testing.assert_allclose(_train(_preset("adam"), 3), adam(True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_train(_preset("adamw"), 3), adam(False), rtol=1e-4, atol=1e-5)
    assert not np.allclose(adam(True), adam(False), rtol=1e-3)  # the two differ here


def test_rmsprop_decays_coupled():
    """The same Keras RMSprop stepped by hand on g + wd * w."""
    preset = _preset("rmsprop", momentum=0.9, rho=0.9, epsilon=1.0)
    optimizer = dataclasses.replace(preset, weight_decay=None).make_optimizer(100)
    w = keras.Variable(W0)
    for _ in range(3):
        optimizer.apply([keras.ops.convert_to_tensor(_grad(w.numpy()) + WD * w.numpy())], [w])
    np.testing.assert_allclose(_train(preset, 3), w.numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "name, scope",
    [("contextnet_cn14", "kernels, no depthwise"), ("hrnetv2_w48", "all"),
     ("segnode", "none"), ("unode", "decoupled")],
)  # fmt: skip
def test_each_family_decays_what_its_framework_decays(name, scope):
    """ContextNet (TF-slim's MobileNet scope): every kernel but the depthwise ones; HRNetV2
    (PyTorch SGD): every weight; SegNode: none; the AdamW Baseline presets: the optimiser's."""
    from kseg.models import create_model

    preset = preset_for(name)
    if name == "hrnetv2_w48":  # the preset's scope, on a small model of the same layers
        model = create_model("unet", num_classes=3)
    else:
        model = create_model(name, num_classes=3)
    count = apply_weight_decay(model, preset)
    decayed = {v.path for v in model.trainable_variables if v.regularizer is not None}
    kinds = {}
    for layer in model._flatten_layers():
        for v in layer._trainable_variables:
            kinds[v.path] = type(layer).__name__
    if scope == "kernels, no depthwise":
        assert preset.weight_decay == 4e-5
        want = {p for p, k in kinds.items() if p.endswith("/kernel") and k != "DepthwiseConv2D"}
        assert decayed == want and any(k == "DepthwiseConv2D" for k in kinds.values())
    elif scope == "all":
        assert preset.weight_decay == 5e-4 and decayed == set(kinds)
    else:
        assert count == 0 and not decayed
        assert (preset.optimizer == "adamw") == (scope == "decoupled")
    assert count == len(decayed)


def test_coupled_l2_is_keras_l2_at_half_the_decay_in_one_op():
    """CoupledL2(wd): the value wd / 2 * sum(w^2) and gradient wd * w of Keras'
    L2(wd / 2), from one L2Loss op a weight (no square, sum or tile), and three products:
    the value's, and in the gradient one through it and one through L2Loss."""
    import tensorflow as tf

    from kseg.train.regularizers import CoupledL2

    w = tf.Variable(np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32"))
    ours, theirs = CoupledL2(WD), keras.regularizers.L2(WD / 2)
    for regularizer in (ours, theirs):
        with tf.GradientTape() as tape:
            value = regularizer(w)
        np.testing.assert_allclose(value, WD / 2 * np.sum(w.numpy() ** 2), rtol=1e-6)
        np.testing.assert_allclose(tape.gradient(value, w), WD * w.numpy(), rtol=1e-6)

    def op_types(regularizer):
        def loss_and_gradient():
            with tf.GradientTape() as tape:
                value = regularizer(w)
            return value, tape.gradient(value, w)

        graph = tf.function(loss_and_gradient).get_concrete_function().graph
        return collections.Counter(op.type for op in graph.get_operations())

    assert op_types(ours)["L2Loss"] == 1 and op_types(ours)["Mul"] == 3
    assert not {"Square", "Tile"} & set(op_types(ours))
    assert {"Square", "Tile"} <= set(op_types(theirs))  # what the one op replaces
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
    assert isinstance(restored, CoupledL2) and restored.weight_decay == WD


def test_kseg_models_add_decay_terms_without_a_reduction_each():
    """Keras reduces every added loss to a scalar before summing them, a scalar too;
    kseg's models take each decay term as it is: the loss is the compiled loss plus the
    terms, as before, and the traced step has no reduction per decayed weight."""
    import tensorflow as tf

    from kseg.models import create_model

    model = create_model("unet", num_classes=3, width=4, levels=2)
    count = apply_weight_decay(model, preset_for("hrnetv2_w48"))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((2, 16, 16, 3)), tf.float32)
    y = tf.constant(rng.integers(0, 3, (2, 16, 16)), tf.int32)
    y_pred = model(x, training=True)
    want = loss(y, y_pred) + np.sum([term.numpy() for term in model.losses])
    np.testing.assert_allclose(model.compute_loss(x, y, y_pred), want, rtol=1e-6)
    graph = tf.function(lambda x, y: model.train_step((x, y))).get_concrete_function(x, y).graph
    sums = [op for op in graph.get_operations() if op.type == "Sum"]
    assert count == len(model.losses) > 10 and len(sums) < 5
