"""kseg's `fit` builds the metrics, losses and optimizer variables from a functional
model's stated outputs instead of Keras' symbolic forward pass: the same state and the
same training as Keras' own build, and the training step still traced once."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.models import create_model
from kseg.tasks import ClassificationTask, task_for
from kseg.train import engine
from kseg.train.presets import preset_for
from tests.helpers import digits_batch, voc_batch
from tests.tiny_models import TINY


def _trained(name, tmp_path, keras_build: bool, monkeypatch):
    """The tiny model after two training steps of kseg's `fit`; with `keras_build`, fit
    builds by Keras' `_symbolic_build` instead. Returns (model, logs, traces of the step)."""
    kwargs, size = TINY[name]
    keras.utils.set_random_seed(0)
    model = create_model(name, **kwargs)
    task = task_for(model)
    classes = keras.tree.flatten(model.output)[0].shape[-1]
    task.compile(model, preset_for(model.name), classes, total_steps=10)
    if isinstance(task, ClassificationTask):
        images, labels = digits_batch(*size, num_classes=classes)
    else:
        images, labels = voc_batch(*size, num_classes=classes)
    ds = tf.data.Dataset.from_tensor_slices((images[:2], labels[:2])).batch(2).repeat(2)
    if keras_build:
        monkeypatch.setattr(engine, "_build_from_outputs", lambda model, spec: False)
    traces = []
    step = model.train_step
    model.train_step = lambda data: (traces.append(1), step(data))[1]
    history = engine.fit(model, ds, None, 1, str(tmp_path), tensorboard=False, verbose=0,
                         precise_bn_batches=0)  # fmt: skip
    return model, history.history, len(traces)


def _slot(variable) -> str:
    return variable.path.split("/", 1)[1]  # without the optimizer's name, unique per model


@pytest.mark.parametrize("name", ["contextnet_cn14", "resnet_gn", "segnode"])
def test_the_same_state_and_training_as_keras_build(name, tmp_path, monkeypatch):
    ours, our_logs, our_traces = _trained(name, tmp_path / "kseg", False, monkeypatch)
    theirs, their_logs, their_traces = _trained(name, tmp_path / "keras", True, monkeypatch)
    assert our_traces == their_traces == 1  # the variables all exist before the first trace
    assert [m.name for m in ours.metrics] == [m.name for m in theirs.metrics]
    assert [(_slot(v), v.name, v.shape) for v in ours.optimizer.variables] == [
        (_slot(v), v.name, v.shape) for v in theirs.optimizer.variables
    ]
    # Keras' names above; the TensorFlow variables under the slots are named alike, so
    # that TensorFlow's eager runtime sets up each shape's creation once.
    slots = {v.value.name for v in ours.optimizer.variables if v.name.endswith("momentum")}
    assert slots == {f"{ours.optimizer.name}/slot:0"}
    assert our_logs.keys() == their_logs.keys()
    for key in our_logs:
        np.testing.assert_allclose(our_logs[key], their_logs[key], rtol=1e-5, err_msg=key)
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)


def test_a_model_without_stated_outputs_takes_keras_build():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model.compile(keras.optimizers.SGD(0.1), "mse", metrics=["mae"])
    spec = (tf.TensorSpec((None, 4)), tf.TensorSpec((None, 3)))
    assert not engine._build_from_outputs(model, spec)
    assert not model.optimizer.built  # nothing half-built
    engine._build_before_tracing(model, tf.distribute.get_strategy(), spec)
    assert model.optimizer.built and model._compile_metrics.built
