"""kseg's `fit` calls the training and test steps from one `tf.function` each, where
Keras nests the step's function in a second one: the same training, logs and validation
as Keras' own functions, epochs that end with their data, and `train_on_batch`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.models import create_model
from kseg.tasks import task_for
from kseg.train import engine
from kseg.train.presets import preset_for
from kseg.train.step_function import set_step_functions
from tests.helpers import voc_batch
from tests.tiny_models import TINY


def _model():
    kwargs, _ = TINY["contextnet_cn14"]
    keras.utils.set_random_seed(0)
    model = create_model("contextnet_cn14", num_classes=21, **kwargs)  # VOC's
    task_for(model).compile(model, preset_for(model.name), 21, total_steps=10)
    return model


def _data(batches: int):
    images, labels = voc_batch(*TINY["contextnet_cn14"][1], num_classes=21)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(2).repeat(batches)


def _fit(tmp_path, keras_functions: bool, monkeypatch):
    """The tiny ContextNet after two epochs of three steps, validated on one batch."""
    if keras_functions:
        monkeypatch.setattr(engine, "set_step_functions", lambda model: None)
    model = _model()
    history = engine.fit(model, _data(3), _data(1), 2, str(tmp_path), tensorboard=False,
                         verbose=0, precise_bn_batches=0)  # fmt: skip
    monkeypatch.undo()
    return model, history.history


def test_fit_trains_and_validates_as_keras_functions(tmp_path, monkeypatch):
    ours, our_logs = _fit(tmp_path / "kseg", False, monkeypatch)
    theirs, their_logs = _fit(tmp_path / "keras", True, monkeypatch)
    # each epoch ended when its three batches ran out
    assert int(ours.optimizer.iterations) == int(theirs.optimizer.iterations) == 6
    assert our_logs.keys() == their_logs.keys() and "val_loss" in our_logs
    for key in our_logs:
        np.testing.assert_allclose(our_logs[key], their_logs[key], rtol=1e-5, err_msg=key)
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)


def test_the_step_is_traced_once_into_one_function(tmp_path):
    model = _model()
    engine.fit(model, _data(2), None, 1, str(tmp_path), tensorboard=False, verbose=0,
               precise_bn_batches=0)  # fmt: skip
    traced = model.train_function.on_iterator
    assert traced.experimental_get_tracing_count() == 1
    (concrete,) = traced._list_all_concrete_functions()
    ops = {op.type for op in concrete.graph.get_operations()}
    assert "FusedBatchNormGradV3" in ops  # the step itself, not a call of another function
    assert not ops & {"PartitionedCall", "StatefulPartitionedCall"}


@pytest.mark.parametrize("method", ["train_on_batch", "test_on_batch"])
def test_on_batch_equals_keras_functions(method):
    images, labels = voc_batch(*TINY["contextnet_cn14"][1], num_classes=21, batch=2)
    ours, theirs = _model(), _model()
    set_step_functions(ours)
    assert ours.train_function is not None and theirs.train_function is None
    targets = keras.tree.map_structure(lambda _: labels, ours.output)  # one per output
    our_logs = getattr(ours, method)(images, targets, return_dict=True)
    their_logs = getattr(theirs, method)(images, targets, return_dict=True)
    assert our_logs.keys() == their_logs.keys()
    for key in our_logs:
        np.testing.assert_allclose(our_logs[key], their_logs[key], rtol=1e-5, err_msg=key)


@pytest.mark.parametrize(
    "option", [{"steps_per_execution": 2}, {"run_eagerly": True}, {"jit_compile": True}]
)
def test_keras_functions_where_one_function_does_not_stand_in(option):
    model = _model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", **option)
    set_step_functions(model)
    assert model.train_function is None and model.test_function is None
