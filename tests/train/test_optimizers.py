"""kseg's optimisers (TensorFlow's fused kernels) against Keras' own, the second
implementation of the same arithmetic."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.train import optimizers
from kseg.train.optimizers import RMSprop
from kseg.train.schedules import PolyDecay


def _model(conv_bias: bool = True) -> keras.Model:
    """A conv, a batch norm and a dense layer. Without `conv_bias` every weight has a
    gradient well above rounding: the conv's bias, which the batch norm cancels, has
    rounding noise for gradient, which Adam's normalised step turns into full steps."""
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, use_bias=conv_bias, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))


def _fit(optimizer, steps: int = 4, conv_bias: bool = True) -> tuple[keras.Model, list[np.ndarray]]:
    keras.utils.set_random_seed(0)
    model = _model(conv_bias)
    model.compile(optimizer, "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 6, 6, 2)), rng.normal(size=(4, 2))
    for _ in range(steps):
        model.train_on_batch(x.astype("float32"), y.astype("float32"))
    return model, [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("momentum, centered", [(0.9, False), (0.0, False), (0.9, True)])
def test_equals_keras_rmsprop_under_a_decaying_rate(momentum, centered):
    """ContextNet's settings (rho 0.9, momentum 0.9, epsilon 1, a poly rate) take the fused
    kernel; without momentum or centered, Keras' own update. Weights and optimiser state
    equal Keras' after four compiled steps."""
    kwargs = dict(rho=0.9, momentum=momentum, epsilon=1.0, centered=centered)
    ours, ours_state = _fit(RMSprop(PolyDecay(0.045, 10, power=0.98), **kwargs))
    keras_, keras_state = _fit(keras.optimizers.RMSprop(PolyDecay(0.045, 10, power=0.98), **kwargs))
    for a, b in zip(ours.weights, keras_.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    for a, b in zip(ours_state, keras_state, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(0)  # the initial weights of `_fit`'s model
    initial = [w.numpy() for w in _model().trainable_weights]
    trained = [w.numpy() for w in ours.trainable_weights]
    # every weight moved: the comparison above is not of untouched weights
    assert all(not np.allclose(w, w0) for w, w0 in zip(trained, initial, strict=True))


def test_one_fused_op_per_weight_and_keras_variable_names():
    """The traced step updates each weight with one ResourceApplyRMSProp op, and the
    optimiser's variables are Keras' (the same names in the same order)."""
    optimizer, reference = RMSprop(0.01, momentum=0.9), keras.optimizers.RMSprop(0.01, momentum=0.9)
    model = _model()
    optimizer.build(model.trainable_variables)
    reference.build(model.trainable_variables)
    names = [v.path.split("/", 1)[1] for v in optimizer.variables]  # after the optimiser's
    assert names == [v.path.split("/", 1)[1] for v in reference.variables]
    assert sum(n.endswith("_momentum") for n in names) == 6
    grads = [tf.ones_like(v) for v in model.trainable_variables]

    def ops_of(opt) -> list[str]:
        fn = tf.function(lambda: opt.apply(grads, model.trainable_variables))
        return fn.get_concrete_function().graph.get_operations()

    ours, theirs = ops_of(optimizer), ops_of(reference)
    assert [op.type for op in ours].count("ResourceApplyRMSProp") == 6
    assert len(model.trainable_variables) == 6 and _scalars_shared(ours)
    assert "ResourceApplyRMSProp" not in {op.type for op in theirs} and len(ours) < len(theirs)


def _scalars_shared(ops) -> bool:
    """Whether all the fused update ops among `ops` read the same scalar tensors (learning
    rate, hyper-parameters, Adam's bias corrections): made once per update of all weights,
    not once per weight."""
    fused = [op for op in ops if op.type.startswith("ResourceApply")]
    scalar = lambda t: t.shape.rank == 0 and t.dtype != tf.resource  # noqa: E731
    per_op = [[t.name for t in op.inputs if scalar(t)] for op in fused]
    return len(fused) > 1 and all(names == per_op[0] for names in per_op)


# (kseg's class, Keras', keyword arguments, the fused op, or None where Keras' update runs)
CASES = {
    "sgd": (optimizers.SGD, keras.optimizers.SGD, {"momentum": 0.9}, "ResourceApplyKerasMomentum"),
    "sgd_nesterov": (
        optimizers.SGD, keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True},
        "ResourceApplyKerasMomentum",
    ),
    "sgd_plain": (optimizers.SGD, keras.optimizers.SGD, {}, None),
    "adam": (optimizers.Adam, keras.optimizers.Adam, {}, "ResourceApplyAdam"),
    "adamw": (
        optimizers.AdamW, keras.optimizers.AdamW, {"weight_decay": 0.05}, "ResourceApplyAdam"
    ),
    "adam_amsgrad": (optimizers.Adam, keras.optimizers.Adam, {"amsgrad": True}, None),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_keras_optimizer_under_a_decaying_rate(case):
    """SGD (SegNode's, HRNet's, DeepLab's presets), Adam and AdamW (the Baseline's): weights
    and optimiser state equal Keras' after four compiled steps at a poly rate, and every
    weight moved; the traced update has one fused op per weight where one applies."""
    ours_cls, keras_cls, kwargs, op = CASES[case]
    rate = 0.05 if ours_cls is optimizers.SGD else 0.01
    ours, ours_state = _fit(ours_cls(PolyDecay(rate, 10, power=0.9), **kwargs), conv_bias=False)
    theirs, theirs_state = _fit(
        keras_cls(PolyDecay(rate, 10, power=0.9), **kwargs), conv_bias=False
    )
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    for a, b in zip(ours_state, theirs_state, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(0)
    initial = [w.numpy() for w in _model(conv_bias=False).trainable_weights]
    trained = [w.numpy() for w in ours.trainable_weights]
    assert all(not np.allclose(w, w0) for w, w0 in zip(trained, initial, strict=True))

    optimizer, model = ours_cls(0.01, **kwargs), _model()
    optimizer.build(model.trainable_variables)
    grads = [tf.ones_like(v) for v in model.trainable_variables]
    fn = tf.function(lambda: optimizer.apply(grads, model.trainable_variables))
    ops = fn.get_concrete_function().graph.get_operations()
    fused = [o.type for o in ops if o.type.startswith("ResourceApply")]
    assert fused == ([op] * len(model.trainable_variables) if op else [])
    assert _scalars_shared(ops) == bool(op)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_saved_optimizer_loads_as_kseg_and_keras_files_load(name, tmp_path):
    """A model compiled with kseg's optimiser round-trips through `.keras` with its class
    and state, and a file saved with Keras' optimiser (every kseg file before these
    classes) still loads, its optimiser Keras'."""
    ours_cls, keras_cls, kwargs, _ = CASES[name]
    for cls in (ours_cls, keras_cls):
        model, state = _fit(cls(0.01, **kwargs), steps=2)
        path = str(tmp_path / f"{cls.__module__.split('.')[0]}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert type(loaded.optimizer) is cls
        for a, b in zip(state, [v.numpy() for v in loaded.optimizer.variables], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_equals_keras_optimizer_under_a_mirrored_strategy(name):
    """Under a distribution strategy each update runs on the replica's copy of the weight
    (`Strategy.extended.update`), as `--strategy mirrored` trains: still Keras' result."""
    ours_cls, keras_cls, kwargs, _ = CASES[name]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    results = []
    for cls in (ours_cls, keras_cls):
        with strategy.scope():
            model, _ = _fit(cls(0.01, **kwargs), steps=3, conv_bias=False)
        results.append([w.numpy() for w in model.weights])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
