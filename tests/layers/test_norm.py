"""kseg's `BatchNormalization` against Keras': the same outputs, moving statistics and
gradients, in training and inference, at the constants kseg trains with; weight files that
load either way."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.layers.norm import BatchNormalization


def _pair(shape=(None, 5, 6, 8), **kwargs):
    """Keras' layer and kseg's, built alike and holding the same (non-trivial) weights."""
    keras_bn = keras.layers.BatchNormalization(**kwargs)
    fused = BatchNormalization(**kwargs)  # kseg's
    for layer in (keras_bn, fused):
        layer.build(shape)
    rng = np.random.default_rng(0)
    for a, b in zip(keras_bn.weights, fused.weights, strict=True):
        value = rng.uniform(0.5, 1.5, a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    return keras_bn, fused


def _forward_backward(layer, x, training):
    """Output and gradients (input, then weights) of a weighted sum."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.range(8, dtype=tf.float32) ** 2)
    return y, tape.gradient(loss, [x, *layer.trainable_weights])


def _run(layer, x, training):
    """Output, gradients (input, then weights) of a weighted sum, and moving statistics."""
    y, grads = _forward_backward(layer, x, training)
    return y, grads, [w.numpy() for w in layer.non_trainable_weights]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"momentum": 0.9, "epsilon": 1e-5},  # PyTorch's constants (HRNet, SegNode, ...)
        {"momentum": 0.99, "epsilon": 1e-3},  # Keras' (ContextNet, DeepLab)
        {"momentum": 0.9, "epsilon": 1e-5, "center": False, "scale": False},
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_equals_keras_batch_norm(kwargs, training):
    keras_bn, fused = _pair(**kwargs)
    moving_variance = fused.moving_variance.numpy()
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, (3, 5, 6, 8)), tf.float32)
    (y0, g0, s0), (y1, g1, s1) = _run(keras_bn, x, training), _run(fused, x, training)
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)
    for a, b in zip(s0, s1, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6)
    if training:  # the moving variance follows the biased batch variance, as Keras' does
        batch_variance = np.var(x.numpy().reshape(-1, 8), axis=0)
        m = kwargs["momentum"]
        expected = m * moving_variance + (1 - m) * batch_variance
        np.testing.assert_allclose(s1[1], expected, rtol=1e-5)


@pytest.mark.parametrize("spec", [(3, 5, 6, 8), (None, None, None, 8)])
def test_traced_step_equals_keras_for_static_and_unknown_shapes(spec):
    """Traced with a known shape the biased-variance factor is a constant, with an unknown
    one it is counted in the graph: the moving statistics are Keras' either way."""
    keras_bn, fused = _pair(momentum=0.9, epsilon=1e-5)
    x = tf.constant(np.random.default_rng(6).normal(1.0, 2.0, (3, 5, 6, 8)), tf.float32)
    for layer in (keras_bn, fused):
        step = tf.function(lambda x, layer=layer: layer(x, training=True))
        graph = step.get_concrete_function(tf.TensorSpec(spec)).graph
        step(x)
    assert ("Size" in {op.type for op in graph.get_operations()}) == (None in spec)
    for a, b in zip(keras_bn.non_trainable_weights, fused.non_trainable_weights, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6)


def test_mixed_precision_and_other_ranks_equal_keras():
    # float16 inputs are normalised in float32 and returned in float16, as Keras does.
    keras_bn, fused = _pair(dtype="mixed_float16", momentum=0.9, epsilon=1e-5)
    x = tf.constant(np.random.default_rng(2).normal(0.0, 2.0, (2, 5, 6, 8)), tf.float16)
    y0, g0, _ = _run(keras_bn, x, True)
    y1, g1, _ = _run(fused, x, True)
    assert y1.dtype == tf.float16
    np.testing.assert_allclose(y1.numpy(), y0.numpy(), rtol=2e-3, atol=2e-3)
    # A 2-D input takes Keras' own path.
    keras_bn, fused = _pair(shape=(None, 8))
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 8)), tf.float32)
    np.testing.assert_allclose(
        _run(fused, x, True)[0], _run(keras_bn, x, True)[0], rtol=1e-6, atol=1e-6
    )


def test_traced_training_step_is_fused_and_saves(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    outputs = BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")(x)
    model = keras.Model(inputs, outputs)
    graph = (
        tf.function(lambda x: model(x, training=True))
        .get_concrete_function(tf.TensorSpec((2, 8, 8, 3)))
        .graph
    )
    assert {op.type for op in graph.get_operations()} >= {"FusedBatchNormV3"}
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("bn")) is BatchNormalization
    x = np.random.default_rng(4).random((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-6)


def test_weights_load_between_keras_and_kseg_batch_norm(tmp_path):
    # Keras names weights in files by class name: a file of a model built with Keras'
    # layer (every kseg model saved before kseg's layer) loads into one built with kseg's.
    def model(norm):
        inputs = keras.Input((8, 8, 3))
        x = norm(name="bn")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
        return keras.Model(inputs, norm(name="bn2")(x))

    old, new = model(keras.layers.BatchNormalization), model(BatchNormalization)
    rng = np.random.default_rng(5)
    for w in old.weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    old.save_weights(tmp_path / "old.weights.h5")
    new.load_weights(tmp_path / "old.weights.h5")
    for a, b in zip(old.weights, new.weights, strict=True):
        np.testing.assert_array_equal(b.numpy(), a.numpy())


@pytest.mark.parametrize("spec", [(1, 1, 1, 8), (None, None, None, 8)])
def test_one_value_per_channel_equals_keras(spec):
    """One value per channel (a batch of one pooled vector): Keras' biased batch variance
    is 0 and its moving variance only decays, where the kernel's unbiased one is undefined."""
    keras_bn, fused = _pair(momentum=0.9, epsilon=1e-5)
    before = fused.moving_variance.numpy()
    x = tf.constant(np.random.default_rng(7).normal(1.0, 2.0, (1, 1, 1, 8)), tf.float32)
    signature = [tf.TensorSpec(spec)]
    for layer in (keras_bn, fused):
        step = lambda x, layer=layer: layer(x, training=True)  # noqa: E731
        tf.function(step, input_signature=signature)(x)
    for a, b in zip(keras_bn.non_trainable_weights, fused.non_trainable_weights, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.9 * before, rtol=1e-6)


def _traced_gradients(layer, x):
    """The traced training call's gradients (input, then weights) of a weighted sum, and
    the traced graph."""

    def step(x):
        return _forward_backward(layer, x, True)[1]

    traced = tf.function(step).get_concrete_function(tf.TensorSpec(x.shape))
    return traced(x), traced.graph


def test_traced_gradient_is_keras_and_makes_no_unread_zeros():
    """The tape records the fused call as one op: its traced gradient is Keras' and holds
    no zeros for the fused kernel's statistics and reserve spaces (which TensorFlow's tape
    makes for every output of an op it differentiates)."""
    keras_bn, fused = _pair(momentum=0.9, epsilon=1e-5)
    x = tf.constant(np.random.default_rng(8).normal(1.0, 2.0, (3, 5, 6, 8)), tf.float32)
    (g0, _), (g1, graph) = _traced_gradients(keras_bn, x), _traced_gradients(fused, x)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)
    types = [op.type for op in graph.get_operations()]
    assert types.count("FusedBatchNormGradV3") == 1 and "ZerosLike" not in types
    unread_zeros = [
        op.name
        for op in graph.get_operations()
        if op.name.split("/")[-1].startswith("zeros") and not op.outputs[0].consumers()
    ]
    assert unread_zeros == []
    for a, b in zip(keras_bn.non_trainable_weights, fused.non_trainable_weights, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6)


def test_second_order_and_function_call_gradients_equal_keras():
    """A gradient of the gradient (the recorded op's gradient is itself differentiable),
    and the gradient through a `tf.function` the tape sees only as a call (which
    TensorFlow differentiates from the function's graph, not from the tape)."""
    x = tf.constant(np.random.default_rng(9).normal(1.0, 2.0, (3, 5, 6, 8)), tf.float32)

    def penalty(layer):  # d/d gamma of |d loss / d x|^2 (beta does not enter d x)
        with tf.GradientTape() as outer:
            d_x = _forward_backward(layer, x, True)[1][0]
            value = tf.reduce_sum(d_x**2)
        return outer.gradient(value, [layer.gamma])

    def through_function(layer):
        call = tf.function(lambda x: layer(x, training=True))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(call(x) * tf.range(8, dtype=tf.float32) ** 2)
        return tape.gradient(loss, [x, *layer.trainable_weights])

    for gradients in (penalty, through_function):
        keras_bn, fused = _pair(momentum=0.9, epsilon=1e-5)
        for a, b in zip(gradients(keras_bn), gradients(fused), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3)
