"""Atomic checkpoints (last and best) and resuming from them.

After every epoch the callback writes `last-epochNNNN.keras` (model, optimiser state and
step; NNNN = epochs done) and `state.json` (best score, history), each to a temporary file
in the same folder that is then renamed into place, and only then removes the older
`last-epoch*.keras`. An interruption at any moment leaves a complete checkpoint, and the
epoch count is in its name, so at most the epoch in progress is lost.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil

import keras

BEST, STATE = "best.keras", "state.json"
_LAST = re.compile(r"last-epoch(\d+)\.keras$")


def last_checkpoint(folder: str) -> tuple[str, int] | None:
    """(path, epochs done) of the newest complete `last-epochNNNN.keras`, or None."""
    found = []
    for path in glob.glob(os.path.join(folder, "last-epoch*.keras")):
        match = _LAST.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        return None
    epoch, path = max(found)
    return path, epoch


def best_or_last(folder: str) -> str:
    """The model a finished run hands on: its best checkpoint, else its last."""
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


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` when `monitor` improves.

    Args:
        folder: where the checkpoints go.
        monitor: a log key, e.g. "val_mean_iou"; None saves no best model.
        mode: "max" or "min".
        state: a previous `state.json` content when resuming (keeps the best score and the
            history of the earlier epochs).
        write: False on the workers of a multi-worker run that are not the chief: they
            follow the epochs but write nothing.

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
        self.best = state.get("best", -math.inf if mode == "max" else math.inf)
        self.history: dict[str, list[float]] = state.get("history", {})
        self.write = write
        self.diverged: tuple[int, list[str]] | None = None
        if write:
            os.makedirs(folder, exist_ok=True)

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
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        previous = last_checkpoint(self.folder)
        last = os.path.join(self.folder, f"last-epoch{epoch + 1:04d}.keras")
        atomic_write(last, self.model.save)
        value = logs.get(self.monitor) if self.monitor else None
        if value is not None and math.isfinite(value) and self._improved(float(value)):
            self.best = float(value)
            # the same model as the file just written: its bytes, not a second serialisation
            atomic_write(os.path.join(self.folder, BEST), lambda tmp: shutil.copyfile(last, tmp))
        if previous and previous[1] != epoch + 1:
            os.remove(previous[0])
        state = {
            "epoch": epoch + 1,
            "best": self.best,
            "monitor": self.monitor,
            "history": self.history,
        }
        atomic_write_json(os.path.join(self.folder, STATE), state)
