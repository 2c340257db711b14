"""Checkpoints are atomic, keep the newest committed epoch, and resume from it, whenever a
run stops; PreciseBN."""

import os

import keras
import numpy as np
import pytest

from kseg.train import checkpoints
from kseg.train.checkpoints import (
    AtomicCheckpoint,
    atomic_write,
    best_or_last,
    last_checkpoint,
    read_state,
)
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


class _Weights(keras.callbacks.Callback):
    """The model's weights at the end of each epoch, by epochs done."""

    def __init__(self):
        super().__init__()
        self.at = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch + 1] = [np.array(w) for w in self.model.get_weights()]


def _holds(path, weights) -> bool:
    return all(
        np.array_equal(a, b)
        for a, b in zip(keras.saving.load_model(path).get_weights(), weights, strict=True)
    )


@pytest.mark.parametrize("stop_at", ["atomic_write_json", "_promote"])
def test_a_run_stopped_while_saving_an_epoch_resumes_where_state_json_says(
    tmp_path, monkeypatch, stop_at
):
    """A stop (Ctrl-C here; a kill alike) during the save of an improved third epoch (the
    loss falls every epoch; an epoch that did not improve would never call `_promote`):
    before `state.json` commits it, the run resumes from epoch 2, whose history and best
    score it keeps, and best.keras stays epoch 2's; after the commit, from epoch 3, and
    best.keras becomes epoch 3's. Either way best.keras holds the model whose score
    state.json calls the best, and the folder ends as a run never stopped leaves it."""
    folder, model, seen = str(tmp_path), _tiny_model(), _Weights()
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[seen, AtomicCheckpoint(folder, "loss", "min")])
    state = read_state(folder)

    def stop(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(checkpoints, stop_at, stop)
        with pytest.raises(KeyboardInterrupt):
            model.fit(
                x, y, epochs=3, initial_epoch=2, verbose=0,
                callbacks=[seen, AtomicCheckpoint(folder, "loss", "min", state=state)],
            )  # fmt: skip
    committed = 3 if stop_at == "_promote" else 2
    state = read_state(folder)
    assert state["epoch"] == state["best_epoch"] == committed
    assert len(state["history"]["loss"]) == committed
    path, epoch = last_checkpoint(folder)
    assert epoch == committed and _holds(path, seen.at[committed])
    assert _holds(best_or_last(folder), seen.at[committed])  # before the next run settles

    AtomicCheckpoint(folder, "loss", "min", state=state)  # the resumed run's, which settles
    assert sorted(os.listdir(folder)) == [
        "best.keras",
        f"last-epoch{committed:04d}.keras",
        "state.json",
    ]
    assert _holds(os.path.join(folder, "best.keras"), seen.at[committed])


def test_a_run_killed_mid_write_leaves_no_temporary_files_behind_its_resume(tmp_path):
    """A SIGKILL during a write leaves the process's temporary file (its `finally` never
    runs); the next run on the folder removes it, and leaves files it did not write."""
    folder, model = str(tmp_path), _tiny_model()
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[AtomicCheckpoint(folder, "loss", "min")])
    left = [".tmp-999999-last-epoch0002.keras", ".tmp-999999-state.json", ".tmp-1-notes.txt"]
    for name in left:
        (tmp_path / name).write_text("half")
    AtomicCheckpoint(folder, "loss", "min", state=read_state(folder))
    assert sorted(os.listdir(folder)) == [
        ".tmp-1-notes.txt",
        "best.keras",
        "last-epoch0001.keras",
        "state.json",
    ]


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


class _Score(keras.callbacks.Callback):
    """Logs `score` = `scores[epoch]`, for the callbacks after it to see."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]


def test_a_run_copied_without_state_json_resumes_with_its_history_and_best_from_log_csv(
    tmp_path,
):
    """A folder whose state.json is gone (a run copied without it): the resumed run takes
    the history and the best score from log.csv, so a fourth epoch scoring 0.7 leaves
    best.keras as epoch 2's 0.9 (without them, any score beat minus infinity and replaced
    it). A log missing an epoch rebuilds nothing."""
    folder, model, seen = str(tmp_path), _tiny_model(), _Weights()
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    log = os.path.join(folder, "log.csv")

    def callbacks(scores, state=None, append=False):
        return [
            _Score(scores),
            seen,
            AtomicCheckpoint(folder, "score", "max", state=state),
            keras.callbacks.CSVLogger(log, append=append),
        ]

    model.fit(x, y, epochs=3, verbose=0, callbacks=callbacks([0.5, 0.9, 0.6]))
    written = read_state(folder)
    os.remove(os.path.join(folder, "state.json"))
    state = checkpoints.state_from_log(folder, 3)
    assert state["epoch"] == 3 and state["history"]["score"] == [0.5, 0.9, 0.6]
    np.testing.assert_allclose(state["history"]["loss"], written["history"]["loss"], rtol=1e-6)
    assert checkpoints.state_from_log(folder, 4) is None  # the log has three epochs

    model = keras.saving.load_model(last_checkpoint(folder)[0])
    model.fit(x, y, epochs=4, initial_epoch=3, verbose=0,
              callbacks=callbacks([0, 0, 0, 0.7], state, append=True))  # fmt: skip
    state = read_state(folder)
    assert (state["best"], state["best_epoch"]) == (0.9, 2)
    assert state["history"]["score"] == [0.5, 0.9, 0.6, 0.7]
    assert _holds(os.path.join(folder, "best.keras"), seen.at[2])


class _ValScore(keras.callbacks.Callback):
    """Logs `val_score` = `scores[epoch]` on the epochs Keras validated (val_loss logged),
    and a training `score` every epoch, as a compiled metric is logged."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = 0.0
        if "val_loss" in logs:
            logs["val_score"] = self.scores[epoch]


def test_validating_every_second_epoch_picks_best_among_the_validated_ones(tmp_path):
    """`fit(val_every=2)` over 5 epochs validates after epochs 2, 4 and 5 (the last): the
    history holds None for the others' validation scores, one entry an epoch for every
    key, log.csv NA; best.keras is the best validated epoch's even where an unvalidated
    one would have scored higher; the history rebuilt from log.csv is the same, and a
    resumed run and the plateau schedule read it without counting the unvalidated epochs."""
    from kseg.train import ResumableReduceLROnPlateau
    from kseg.train.engine import validation_epochs

    assert validation_epochs(5, 2) == [2, 4, 5] and validation_epochs(6, 3) == [3, 6]
    assert validation_epochs(5, 1) == 1
    folder, model, seen = str(tmp_path), _tiny_model(), _Weights()
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    log = os.path.join(folder, "log.csv")
    scores = [0.99, 0.5, 0.98, 0.8, 0.6, 0.7]  # epochs 1 and 3 are never validated
    model.fit(x, y, validation_data=(x, y), epochs=5, validation_freq=validation_epochs(5, 2),
              verbose=0, callbacks=[_ValScore(scores), seen, keras.callbacks.CSVLogger(log),
                                    AtomicCheckpoint(folder, "val_score", "max")])  # fmt: skip
    state = read_state(folder)
    assert state["history"]["val_score"] == [None, 0.5, None, 0.8, 0.6]
    assert [v is None for v in state["history"]["val_loss"]] == [True, False, True, False, False]
    assert {len(values) for values in state["history"].values()} == {5}
    assert (state["best"], state["best_epoch"]) == (0.8, 4)
    assert _holds(os.path.join(folder, "best.keras"), seen.at[4])
    rows = open(log).read().splitlines()
    header = rows[0].split(",")
    assert [r.split(",")[header.index("val_loss")] == "NA" for r in rows[1:]] == [
        True, False, True, False, False
    ]  # fmt: skip
    rebuilt = checkpoints.state_from_log(folder, 5)["history"]
    assert rebuilt["val_score"] == state["history"]["val_score"]

    resumed = AtomicCheckpoint(
        str(tmp_path / "copy"), "val_score", "max", state={"history": rebuilt}
    )
    assert (resumed.best, resumed.best_epoch) == (0.8, 4)
    plateau = ResumableReduceLROnPlateau(history=rebuilt["val_score"], monitor="val_score",
                                         mode="max", patience=1, factor=0.5)  # fmt: skip
    model = keras.saving.load_model(last_checkpoint(folder)[0])
    before = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    model.fit(x, y, validation_data=(x, y), epochs=6, initial_epoch=5, verbose=0,
              validation_freq=validation_epochs(6, 2),
              callbacks=[_ValScore(scores), plateau])  # fmt: skip
    # the replayed 0.5, 0.8, 0.6 (the None of epochs 1 and 3 not counted) leave 0.8 the
    # best; epoch 6's 0.7 does not beat it, and with patience 1 the rate halves
    after = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert after == pytest.approx(before * 0.5)
