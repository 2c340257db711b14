"""Batch norm -> ReLU -> conv chains recomputed in the backward pass
(`kseg.layers.recompute`): which chains qualify, and the same loss, gradients and moving
statistics as Keras' own back-propagation of the same layers, in a model, in SegNode's
ODE function under both of its gradients, and through `fit`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.layers import recompute
from kseg.layers.conv import conv_norm_act, norm_act_conv
from kseg.layers.norm import TORCH_BATCH_NORM
from kseg.layers.recompute import recomputing_norm_act
from kseg.models import SegNode
from kseg.models.base import ImageModel, SegmentationModel


def _chain_model():
    """Five qualifying chains (marked) and three that are not."""
    norm = TORCH_BATCH_NORM
    x = inputs = keras.Input((None, None, 3))
    x = conv_norm_act(x, 8, 3, norm=norm, name="a")  # the image feeds conv a: no chain
    y = conv_norm_act(x, 8, 3, 2, norm=norm, name="b")  # chain: a's norm-ReLU, strided b
    y = keras.layers.Conv2D(8, 3, dilation_rate=2, padding="same", name="c")(y)  # chain
    y = norm_act_conv(y, 8, 3, norm=norm, name="d")  # chain (pre-activation)
    y = norm_act_conv(y, 6, 1, norm=norm, name="e")  # chain
    y = norm_act_conv(y, 6, 3, norm=norm, activation="relu6", name="r")  # chain (ReLU6)
    # A ReLU output that feeds two convs keeps its output: no chain for f and g.
    z = keras.layers.Activation("relu", name="h_relu")(norm.layer(6, "h_bn")(y))
    f = keras.layers.Conv2D(4, 1, name="f")(z)
    g = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="g")(z)
    # A norm whose output is also a model output: no chain for k.
    n = norm.layer(4, "n_bn")(f)
    k = keras.layers.Conv2D(4, 1, name="k")(keras.layers.Activation("relu", name="n_relu")(n))
    outputs = keras.layers.Add()([f, g, k])
    return keras.Model(inputs, [outputs, n])


def _randomised(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        scale = 0.3 if len(w.shape) > 1 else 1.0
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32") * scale)
    return model


def _training_step(model, x, recompute_chains: bool):
    """Loss, the gradients of every trainable weight and the moving statistics after."""

    @tf.function
    def step():
        with recomputing_norm_act(recompute_chains), tf.GradientTape() as tape:
            if recompute_chains and not isinstance(model, ImageModel):  # a plain model
                outputs = recompute.call_functional(model, x, training=True)
            else:  # kseg's models take the context themselves
                outputs = model(x, training=True)
            outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
            loss = sum(tf.reduce_sum(tf.square(o - 0.1)) for o in outputs)
        return loss, tape.gradient(loss, model.trainable_weights)

    saved = [w.numpy() for w in model.weights]
    loss, grads = step()
    moving = [w.numpy() for w in model.non_trainable_weights]
    for w, value in zip(model.weights, saved, strict=True):
        w.assign(value)
    return loss.numpy(), [g.numpy() for g in grads], moving


def _assert_gradients_close(model, grads, ref_grads, tolerance):
    """Each weight's gradient to `tolerance`, relative, with an absolute floor at that
    fraction of the largest gradient anywhere: a bias before a batch norm has a gradient
    of zero, and float32 noise around it."""
    floor = tolerance * max(np.abs(r).max() for r in ref_grads)
    for w, g, r in zip(model.trainable_weights, grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=tolerance, atol=floor, err_msg=w.path)


def test_qualifying_chains():
    model = _chain_model()
    chains = recompute._chains(model)
    found = {layer.name for layer in model.layers if id(layer) in chains}
    assert found == {"b_conv", "c", "d_conv", "e_conv", "r_conv"}
    assert chains[id(model.get_layer("c"))][0] is model.get_layer("b_bn")
    assert chains[id(model.get_layer("d_conv"))][1] is model.get_layer("d_relu")


@pytest.fixture
def recomputed(monkeypatch):
    """The names of the convs whose chains were run recomputing, call by call."""
    calls = []
    original = recompute.norm_relu_conv

    def counting(x, norm, conv, six=False):
        calls.append(conv.name)
        return original(x, norm, conv, six)

    monkeypatch.setattr(recompute, "norm_relu_conv", counting)
    return calls


def test_chains_back_propagate_as_keras(recomputed):
    model = _randomised(_chain_model())
    model.get_layer("r_bn").gamma.assign(tf.fill([6], 4.0))  # so that ReLU6 clips some
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 16, 12, 3)).astype("float32"))
    loss, grads, moving = _training_step(model, x, True)
    assert sorted(recomputed) == ["b_conv", "c", "d_conv", "e_conv", "r_conv"]
    recomputed.clear()
    ref_loss, ref_grads, ref_moving = _training_step(model, x, False)
    assert not recomputed
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert len(grads) == len(model.trainable_weights) == len(ref_grads)
    _assert_gradients_close(model, grads, ref_grads, 1e-5)
    for a, b in zip(moving, ref_moving, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_inference_and_frozen_norms_take_keras_path():
    model = _randomised(_chain_model())
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 8, 8, 3)).astype("float32"))
    with recomputing_norm_act():
        assert recompute.recomputes(True) and not recompute.recomputes(None)
        assert not recompute.recomputes(tf.constant(True))  # a symbolic flag: Keras' path
        np.testing.assert_allclose(
            recompute.call_functional(model, x, training=False)[0], model(x)[0], rtol=1e-6
        )
        for name in ("b_bn", "d_bn"):
            model.get_layer(name).trainable = False
        chains = recompute._chains(model)
        assert len(chains) == 5  # found once; the frozen norms' chains are skipped per call
        loss, _, _ = _training_step(model, x, True)
    ref_loss, _, _ = _training_step(model, x, False)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)


@pytest.mark.parametrize(
    "solver",
    [{"method": "rk4", "steps": 2, "gradient": "checkpoint"}, {"rtol": 0.01, "atol": 0.01}],
)
def test_segnode_function_recomputes_under_both_gradients(solver, recomputed):
    """SegNode's ODE function (pre-activation HRNet modules): every conv of its basic
    blocks, and every conv after the first of the fusion's stride-2 chains, ends a chain;
    gradients equal with or without, on the checkpointed grid and with kseg's adjoint on
    the adaptive dopri5."""
    model = SegNode(num_classes=3, width=4, modules=1, blocks=1, solver=solver)
    func = model.get_layer("segnode_ode").func
    # branches x blocks x two convs, and the stride-2 chains to branch 2 (2 convs) and 3
    # (3 from branch 0, 2 from branch 1)
    assert len(recompute._chains(func)) == 4 * 1 * 2 + 1 + 2 + 1
    x = tf.constant(np.random.default_rng(3).uniform(size=(2, 32, 32, 3)).astype("float32"))
    loss, grads, moving = _training_step(model, x, True)
    assert {name for name in recomputed if name.startswith("module1_branch")} == {
        f"module1_branch{i}_block1_{k}_conv" for i in range(4) for k in (1, 2)
    }
    recomputed.clear()
    ref_loss, ref_grads, ref_moving = _training_step(model, x, False)
    assert not recomputed
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    _assert_gradients_close(model, grads, ref_grads, 1e-4)
    for a, b in zip(moving, ref_moving, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_recomputes_when_asked(tmp_path, recomputed):
    """`fit(recompute_norm_act=True)` traces its steps through the chains; the weights and
    moving statistics after an epoch (precise statistics and validation included) equal
    those of a run without."""
    from kseg.train.engine import fit

    rng = np.random.default_rng(4)
    images = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 3, (4, 16, 16)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    weights = []
    for flag in (True, False):
        keras.utils.set_random_seed(0)
        norm = TORCH_BATCH_NORM
        x = inputs = keras.Input((16, 16, 3))
        x = conv_norm_act(x, 8, 3, norm=norm, name="a")
        x = conv_norm_act(x, 8, 3, norm=norm, name="b")
        outputs = keras.layers.Conv2D(3, 1, name="logits")(x)
        model = SegmentationModel(inputs, outputs)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        # With validation, so that the precise batch-norm statistics (an eager training-
        # mode pass inside the option) are recomputed before it.
        fit(model, data, data, 1, str(tmp_path / str(flag)), tensorboard=False,
            precise_bn_batches=1, verbose=0, recompute_norm_act=flag)  # fmt: skip
        weights.append([w.numpy() for w in model.weights])
        assert sorted(set(recomputed)) == (["b_conv", "logits"] if flag else [])
        recomputed.clear()
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
