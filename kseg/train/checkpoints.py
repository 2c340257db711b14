"""Atomic checkpoints (last and best) and resuming from them.

After every epoch the callback writes `last-epochNNNN.keras` (model, optimiser state and
step; NNNN = epochs done) and, when the epoch improved on the best score, a copy of it
as `.best-epochNNNN.keras`, each to a temporary file in the same folder that is renamed
into place. Then it writes `state.json` (epochs done, best score and its epoch, history)
the same way: that rename commits the epoch. Only after it does the copy become
`best.keras` and the older `last-epoch*.keras` go. A run stopped at any moment resumes
from the epoch `state.json` names, with the history and best score of that epoch, so at
most the epoch in progress is lost; `settle` finishes or discards what the stop left.
A folder that lost its `state.json` (a run copied without it) has its history and best
score rebuilt from `log.csv` (`state_from_log`), or the runner scores `best.keras` again,
so that the first epoch trained after the copy does not replace a better `best.keras`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil

import keras

BEST, STATE, LOG = "best.keras", "state.json", "log.csv"
_LAST = re.compile(r"^last-epoch(\d+)\.keras$")
_PENDING_BEST = re.compile(r"^\.best-epoch(\d+)\.keras$")
_TEMPORARY = re.compile(r"^\.tmp-\d+-(last-epoch\d+\.keras|\.best-epoch\d+\.keras|state\.json)$")


def _numbered(folder: str, pattern: re.Pattern) -> dict[int, str]:
    """{epoch: path} of the files in `folder` whose names match `pattern`."""
    if not os.path.isdir(folder):
        return {}
    found = {}
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match:
            found[int(match.group(1))] = os.path.join(folder, name)
    return found


def last_checkpoint(folder: str) -> tuple[str, int] | None:
    """(path, epochs done) of the run's last committed checkpoint, or None: the
    `last-epochNNNN.keras` of the epoch `state.json` records. A later file is an epoch
    whose saving a stop interrupted; without a `state.json` (or its epoch's file) the newest
    file counts."""
    files = _numbered(folder, _LAST)
    if not files:
        return None
    epoch = (read_state(folder) or {}).get("epoch")
    if epoch not in files:
        epoch = max(files)
    return files[epoch], epoch


def _committed_best(pending: dict[int, str], state: dict) -> str | None:
    """Of the `.best-epochNNNN.keras` files `pending` ({epoch: path}), the one that
    `state.json` committed as the best model and that has not yet been renamed to
    `best.keras`, or None."""
    epoch = state.get("best_epoch")
    return pending.get(epoch) if epoch is not None and epoch == state.get("epoch") else None


def settle(folder: str) -> None:
    """Finishes what a run stopped while saving left in `folder`, before training in it
    again: the best model of the epoch `state.json` committed becomes `best.keras`; the
    other epochs' checkpoints (older ones a stop kept, a later one it did not commit), best
    models it did not commit and the temporary files of interrupted writes are removed."""
    state = read_state(folder) or {}
    pending = _numbered(folder, _PENDING_BEST)
    committed = _committed_best(pending, state)
    for path in pending.values():
        if path == committed:
            _promote(path, os.path.join(folder, BEST))
        else:
            os.remove(path)
    # (state.json names no file when an older kseg, which wrote it last, was stopped before)
    if state.get("epoch") in _numbered(folder, _LAST):
        _keep_only(folder, state["epoch"])
    for name in os.listdir(folder):
        if _TEMPORARY.match(name):
            os.remove(os.path.join(folder, name))


def model_of(path: str) -> str:
    """`path`, or where it is a run folder (a recipe's `--out`, holding a checkpoint) the
    model that run hands on (`best_or_last`), said in a line: `kseg.predict` and
    `kseg.export` take a run folder as its model."""
    if os.path.isdir(path) and last_checkpoint(path):
        found = best_or_last(path)
        print(f"{path} is a run folder: its model is {found}")
        return found
    return path


def best_or_last(folder: str) -> str:
    """The model a finished run hands on: its best checkpoint (the committed one, if a stop
    came before it was renamed to `best.keras`), else its last."""
    committed = _committed_best(_numbered(folder, _PENDING_BEST), read_state(folder) or {})
    if committed:
        return committed
    best = os.path.join(folder, BEST)
    if os.path.exists(best):
        return best
    found = last_checkpoint(folder)
    if found is None:
        raise FileNotFoundError(f"{folder} has no {BEST} and no last-epoch*.keras; train first")
    return found[0]


def atomic_write(path: str, write) -> None:
    """Calls `write(tmp_path)`, then renames the temporary file over `path`. The temporary
    name is the process's own, so that two processes writing one path (workers of a run
    sharing its folder) each rename a whole file."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(path: str, data) -> None:
    """Writes `data` as indented JSON to `path` through `atomic_write`."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)

    atomic_write(path, write)


def read_json(path: str) -> dict | None:
    """The JSON file at `path` (one `atomic_write_json` wrote), or None if there is none."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_state(folder: str) -> dict | None:
    return read_json(os.path.join(folder, STATE))


def state_from_log(folder: str, epochs: int) -> dict | None:
    """What `state.json` held after `epochs` epochs, its history rebuilt from the run's
    `log.csv` (Keras' CSVLogger: a row of logs an epoch, numbered from 0, appended after
    the epoch's commit), or None when the log lacks one of those epochs (a stop between
    the commit and the row). The best score and its epoch are left to `AtomicCheckpoint`,
    which knows the monitored key."""
    path = os.path.join(folder, LOG)
    if not os.path.exists(path):
        return None
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows[int(row["epoch"])] = row
            except (KeyError, TypeError, ValueError):  # not a log kseg wrote
                return None
    if any(epoch not in rows for epoch in range(epochs)):
        return None
    history: dict[str, list[float | None]] = {}
    for epoch in range(epochs):
        for key, value in rows[epoch].items():
            if key in ("epoch", None):
                continue
            try:  # CSVLogger writes NA for a key an epoch did not log
                missing = value in ("", "NA", None)
                history.setdefault(key, []).append(None if missing else float(value))
            except ValueError:  # not a log kseg wrote
                return None
    return {"epoch": epochs, "history": history}


def best_in(history: dict[str, list[float | None]], monitor: str, mode: str = "max"):
    """(best finite value of `history[monitor]`, its epoch counted from 1), or None. An
    epoch without the score (None: not validated, `fit(val_every=...)`) is passed over."""
    scores = [
        (v, i + 1)
        for i, v in enumerate(history.get(monitor, []))
        if v is not None and math.isfinite(v)
    ]
    if not scores:
        return None
    pick = max if mode == "max" else min
    return pick(scores, key=lambda pair: pair[0])


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves `last-epochNNNN.keras` every epoch and `best.keras` when `monitor` improves,
    committing each epoch with `state.json` (the module's docstring says in which order).

    Args:
        folder: where the checkpoints go.
        monitor: a log key, e.g. "val_mean_iou"; None saves no best model.
        mode: "max" or "min".
        state: a previous `state.json` content when resuming (keeps the best score, its
            epoch and the history of the earlier epochs). A state without a best score
            (`state_from_log`'s) takes the best of its history's `monitor`.
        write: False on the workers of a multi-worker run that are not the chief: they
            follow the epochs but write nothing. The chief `settle`s the folder first.

    An epoch whose losses (any `*loss` in the logs, training or validation) are not finite
    is not saved: the callback stops training and sets `diverged` to (epoch, keys).
    """

    def __init__(
        self,
        folder: str,
        monitor: str | None = "val_mean_iou",
        mode: str = "max",
        state: dict | None = None,
        write: bool = True,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.folder, self.monitor, self.mode = folder, monitor, mode
        state = state or {}
        found = best_in(state.get("history", {}), monitor, mode) if monitor else None
        if "best" not in state and found:
            state = {**state, "best": found[0], "best_epoch": found[1]}
        self.best = state.get("best", -math.inf if mode == "max" else math.inf)
        self.best_epoch: int | None = state.get("best_epoch")
        self.history: dict[str, list[float | None]] = state.get("history", {})
        self.write = write
        self.diverged: tuple[int, list[str]] | None = None
        if write:
            os.makedirs(folder, exist_ok=True)
            settle(folder)

    def _improved(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        bad = [k for k, v in logs.items() if k.endswith("loss") and not math.isfinite(float(v))]
        if bad:
            self.diverged = (epoch, sorted(bad))
            self.model.stop_training = True
            return
        if not self.write:
            return
        done = epoch + 1
        last = os.path.join(self.folder, f"last-epoch{done:04d}.keras")
        atomic_write(last, self.model.save)
        history = {key: list(values) for key, values in self.history.items()}
        # one entry an epoch for every key: None where an epoch did not log it (the
        # validation scores of an epoch that was not validated)
        before = max((len(values) for values in history.values()), default=0)
        for key in history.keys() | logs.keys():
            value = logs.get(key)
            history.setdefault(key, [None] * before).append(None if value is None else float(value))
        best, best_epoch, pending = self.best, self.best_epoch, None
        value = logs.get(self.monitor) if self.monitor else None
        if value is not None and math.isfinite(value) and self._improved(float(value)):
            best, best_epoch = float(value), done
            pending = os.path.join(self.folder, f".best-epoch{done:04d}.keras")
            # the same model as the file just written: its bytes, not a second serialisation
            atomic_write(pending, lambda tmp: shutil.copyfile(last, tmp))
        state = {
            "epoch": done,
            "best": best,
            "best_epoch": best_epoch,
            "monitor": self.monitor,
            "history": history,
        }
        atomic_write_json(os.path.join(self.folder, STATE), state)  # the epoch's commit
        self.best, self.best_epoch, self.history = best, best_epoch, history
        if pending:
            _promote(pending, os.path.join(self.folder, BEST))
        _keep_only(self.folder, done)


def _keep_only(folder: str, epoch: int) -> None:
    """Removes every `last-epochNNNN.keras` in `folder` but the committed `epoch`'s."""
    for other, path in _numbered(folder, _LAST).items():
        if other != epoch:
            os.remove(path)


def _promote(pending: str, best: str) -> None:
    """Renames the best model an epoch committed into place: the last step of the epoch's
    save, which `settle` repeats when a stop came before it."""
    os.replace(pending, best)
