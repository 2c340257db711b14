"""A diverging run stops with a message and keeps its last good checkpoint; the focal
loss against its closed form."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.errors import TrainingDiverged
from kseg.tasks import SegmentationTask, SparseFocalLoss
from kseg.train.checkpoints import last_checkpoint, read_state
from kseg.train.engine import fit
from kseg.train.presets import DEFAULT_PRESET


def _data(bad_images: bool = False):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, (4, 8, 8)).astype("int32")
    if bad_images:
        images[0, 0, 0, 0] = np.nan
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)


def test_non_finite_validation_loss_stops_the_run_and_keeps_the_last_good_epoch(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="classifier")(inputs))
    SegmentationTask().compile(model, DEFAULT_PRESET, 3, total_steps=10)
    folder = str(tmp_path / "run")
    fit(model, _data(), _data(), 1, folder, tensorboard=False, verbose=0, precise_bn_batches=0)
    best = os.path.join(folder, "best.keras")
    saved = os.path.getmtime(best)
    # Training stays finite; validation meets a NaN image: the logits and loss are NaN.
    with pytest.raises(TrainingDiverged, match=r"epoch 2: val_loss not finite") as error:
        fit(model, _data(), _data(bad_images=True), 3, folder, initial_epoch=1,
            state=read_state(folder), tensorboard=False, verbose=0,
            precise_bn_batches=0)  # fmt: skip
    assert "last-epoch0001.keras" in str(error.value) and "--learning-rate" in str(error.value)
    assert last_checkpoint(folder)[1] == 1 and os.path.getmtime(best) == saved
    assert read_state(folder)["epoch"] == 1


def test_compile_refuses_a_class_count_the_model_does_not_output():
    """The metrics count `num_classes`; a model with another number of outputs would be
    scored on classes it cannot predict (the README's example once compiled an 11-class
    ContextNet with 19)."""
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs), name="three")
    with pytest.raises(ValueError, match="three outputs 3 classes, and compile was given "
                                         "num_classes=19"):  # fmt: skip
        SegmentationTask().compile(model, DEFAULT_PRESET, 19, total_steps=10)
    assert not model.compiled


def test_non_finite_training_loss_stops_the_run_before_any_checkpoint(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    SegmentationTask().compile(model, DEFAULT_PRESET, 3, total_steps=10)
    folder = str(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="loss"):
        fit(model, _data(bad_images=True), _data(), 2, folder, tensorboard=False, verbose=0,
            precise_bn_batches=0)  # fmt: skip
    assert last_checkpoint(folder) is None and not os.path.exists(
        os.path.join(folder, "best.keras")
    )


def test_focal_loss_matches_its_closed_form_and_ignores_255():
    logits = np.array([[[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0]]], "float32")
    labels = np.array([[0, 2, 255]])
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    p_y = np.array([p[0, 0, 0], p[0, 1, 2]])
    want = np.mean(-((1 - p_y) ** 2) * np.log(p_y))  # the two kept pixels
    got = SparseFocalLoss(gamma=2.0, ignore_class=255)(labels, logits)
    assert float(got) == pytest.approx(want, rel=1e-5)
    ce = SparseFocalLoss(gamma=0.0, ignore_class=255)(labels, logits)
    assert float(ce) == pytest.approx(np.mean(-np.log(p_y)), rel=1e-5)  # gamma 0: cross-entropy


def test_precise_bn_under_a_strategy_sets_the_statistics_of_the_batches():
    """PreciseBN's distributed path (strategy.run over a distributed dataset): the moving
    mean and variance become the averages of the batches' own statistics, whatever they
    were before, in every call of one traced forward."""
    from kseg.train.precise_bn import recompute_batch_norm_statistics, training_forward

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inputs = keras.Input((4, 4, 2))
        bn = keras.layers.BatchNormalization(name="bn")
        model = keras.Model(inputs, bn(inputs))
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (8, 4, 4, 2)).astype("float32") for _ in range(3)]

    def ds_from(chosen):
        data = tf.data.Dataset.from_tensor_slices(np.concatenate(chosen)).batch(8)
        return strategy.experimental_distribute_dataset(data)

    forward = training_forward(model, strategy)
    for first in (0, 1):  # a second epoch's call reuses the traced forward
        bn.moving_mean.assign(np.full(2, 100.0, "float32"))
        used = recompute_batch_norm_statistics(
            model, iter(ds_from(batches[first:])), 2, strategy=strategy, forward=forward
        )
        assert used == 2 and bn.momentum == 0.99
        chosen = batches[first : first + 2]
        means = np.mean([b.mean(axis=(0, 1, 2)) for b in chosen], axis=0)
        variances = np.mean([b.var(axis=(0, 1, 2)) for b in chosen], axis=0)
        np.testing.assert_allclose(bn.moving_mean.numpy(), means, rtol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), variances, rtol=1e-4)
    assert forward.experimental_get_tracing_count() == 1  # one trace, no eager replica runs
