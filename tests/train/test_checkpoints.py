"""Checkpoints are atomic, keep the newest complete epoch, and resume; PreciseBN."""

import os

import keras
import numpy as np
import pytest

from kseg.train.checkpoints import AtomicCheckpoint, atomic_write, last_checkpoint, read_state
from kseg.train.precise_bn import recompute_batch_norm_statistics


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(str(path), lambda p: open(p, "w").write("old"))

    def broken(p):
        with open(p, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(path), broken)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left


def _tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("adam", "mse")
    return model


def test_checkpoint_keeps_only_the_newest_epoch_and_the_best(tmp_path):
    model = _tiny_model()
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    cb = AtomicCheckpoint(str(tmp_path), monitor="loss", mode="min")
    model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last-epoch0003.keras", "state.json"]
    path, epoch = last_checkpoint(str(tmp_path))
    assert epoch == 3 and path.endswith("last-epoch0003.keras")
    state = read_state(str(tmp_path))
    assert state["epoch"] == 3 and len(state["history"]["loss"]) == 3
    assert state["best"] == pytest.approx(min(state["history"]["loss"]))
    reloaded = keras.saving.load_model(path)
    assert int(reloaded.optimizer.iterations) == int(model.optimizer.iterations) == 3
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_precise_bn_sets_the_moving_statistics_to_the_batch_average():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=5.0, scale=2.0, size=(16, 3)).astype("float32") for _ in range(4)]
    used = recompute_batch_norm_statistics(model, iter(batches), 3)
    bn = model.layers[0]
    assert used == 3 and bn.momentum == 0.99
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches[:3]], 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches[:3]], 0), rtol=1e-4
    )
