"""The run configuration: a typed dataclass, the command line that fills it, and the
`config.json` every run folder records.

Precedence: the dataclass defaults, then `--config FILE` (a run folder's `config.json`, or
one you write), then the flags given. `None` means "the preset's value" for the training
settings (epochs, batch size, learning rate, optimizer, weight decay, crop).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import typing
from typing import Literal

from kseg.errors import UserError

CONFIG = "config.json"


@dataclasses.dataclass
class RunConfig:
    """The settings of one run of a recipe."""

    command: Literal["train", "evaluate", "predict", "qat"] | None = None  # None with --demo
    model: str | None = None  # a registry name (None: the recipe's default)
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    data_dir: str | None = None
    out: str | None = None
    demo: bool = False
    # Training; None: the preset's.
    epochs: int | None = None
    batch_size: int | None = None
    loss: Literal["cross_entropy", "focal", "ohem", "dice", "cross_entropy_dice"] | None = None
    class_weights: bool = True  # the preset's class weights, where it has them
    learning_rate: float | None = None
    optimizer: Literal["sgd", "rmsprop", "adam", "adamw"] | None = None
    weight_decay: float | None = None
    steps_per_epoch: int | None = None
    seed: int | None = None
    strategy: Literal["default", "mirrored", "multiworker", "tpu"] = "default"
    sync_bn: Literal["auto", "on", "off"] = "auto"  # batch norm over all replicas; auto: >1
    resume: bool = True
    init_from: str | None = None
    logical_cpus: int = 0
    tensorboard: bool = True
    mixed_precision: Literal["none", "float16", "bfloat16"] = "none"
    verbose: Literal["auto", "0", "1", "2"] = "auto"
    graph_optimization: Literal["auto", "on", "off"] = "auto"  # Grappler; auto: with a GPU
    recompute_norm_act: bool = False  # BN-ReLU recomputed in the backward pass
    accumulate: int = 1  # each step's batch run in this many pieces, gradients summed
    val_every: int = 1  # validate every N epochs (and after the last)
    # Segmentation
    crop: tuple[int, int] | None = None
    eval_crop: tuple[int, int] | Literal["full"] | None = None
    skip_bad_files: bool = False
    balance_classes: bool = False  # median frequency class weights from the training labels
    mask_suffix: str | None = None  # your own data: NAME.jpg's mask is NAME + this
    precise_bn_batches: int = 8
    train_splits: tuple[str, ...] | None = None  # None: the recipe's training split
    prune_from: float | None = None
    prune_to: tuple[float, ...] = (1.5, 1.25, 1.0)
    finetune_epochs: int | None = None
    monitor: Literal["top", "bottom", "mean"] | None = None  # cross cooperative learning
    augment: bool = True
    # Classification
    width: int | None = None
    train_images: int | None = None
    test_images: int | None = None
    steps_images: int | None = None
    # Evaluate and predict
    label_ids: bool = False
    checkpoint: str | None = None
    split: str | None = None
    limit: int | None = None
    zero_branch: Literal["deep", "shallow"] | None = None
    scales: tuple[float, ...] | None = None
    flip: bool = False
    ten_crop: bool = False  # ImageNet: 10-crop testing
    plain_eval: bool = False  # without the recipe's test protocol (LIP's resize and flip)

    # Settings of one invocation, not of the run: not written to config.json.
    PER_CALL: typing.ClassVar = (
        "command",
        "checkpoint",
        "split",
        "limit",
        "label_ids",
        "zero_branch",
    )

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.PER_CALL}

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_sources(cls, file_values: dict, flags: dict) -> RunConfig:
        """Defaults, then `file_values` (from a config file), then `flags`."""
        unknown = sorted(set(file_values) - cls.fields())
        if unknown:
            raise UserError(
                f"the config file has unknown setting(s) {', '.join(unknown)}; the settings "
                f"are: {', '.join(sorted(cls.fields()))}"
            )
        values = {**file_values, **flags}
        for key in ("crop", "prune_to"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if isinstance(values.get("eval_crop"), list):
            values["eval_crop"] = tuple(values["eval_crop"])
        return cls(**values)


def read_config_file(path: str) -> dict:
    """The settings of a `config.json` (its "run" section) or of a JSON file of settings."""
    if not os.path.isfile(path):
        raise UserError(f"--config {path}: no such file")
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"--config {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must hold a JSON object of settings")
    return data.get("run", data)


def versions() -> dict:
    import keras
    import tensorflow as tf

    import kseg

    return {"kseg": kseg.__version__, "tensorflow": tf.__version__, "keras": keras.__version__}


def write_run_record(folder: str, config: RunConfig, preset, dataset: str, **details) -> str:
    """Writes `folder/config.json`: the run's settings, the preset it trained with, the
    dataset and the versions of kseg, TensorFlow and Keras. `--config` re-runs from it."""
    from kseg.train.checkpoints import atomic_write_json

    record = {
        "run": config.to_json(),
        "preset": {"name": preset.name, "source": preset.source, **details},
        "dataset": dataset,
        "versions": versions(),
    }
    path = os.path.join(folder, CONFIG)
    os.makedirs(folder, exist_ok=True)
    atomic_write_json(path, record)
    return path


def read_run_record(folder: str) -> dict | None:
    from kseg.train.checkpoints import read_json

    return read_json(os.path.join(folder, CONFIG))


def trained_data(model_path: str, num_classes: int):
    """The reader of the segmentation data that the run beside `model_path` (a model file
    in a run folder) trained on, by the data folder its `config.json` records, so that an
    export or a prediction names and colours the classes as the data does; None when there
    is no record, the folder is gone or changed, or it has not `num_classes` classes."""
    from kseg.data import SEGMENTATION_DATASETS

    folder = os.path.dirname(os.path.abspath(model_path))
    record = read_run_record(folder) or {}
    run, reader = record.get("run", {}), SEGMENTATION_DATASETS.get(record.get("dataset"))
    data_dir = _recorded_path(run.get("data_dir"), folder, run.get("out"))
    if reader is None or data_dir is None:
        return None
    try:
        dataset = reader(data_dir, **{key: run.get(key) for key in reader.OPTIONS})
    except UserError:  # the folder changed since: no names rather than wrong ones
        return None
    if dataset.num_classes != num_classes:
        return None
    print(f"Classes of {data_dir}, the data the run trained on (its {CONFIG})")
    return dataset


def _recorded_path(path: str | None, folder: str, out: str | None) -> str | None:
    """A folder a run recorded (`path`, maybe relative to where the run started), found
    from here or, when `out` (the run's folder as it was given) ends `folder`'s path, from
    where the run started; None when it is not there."""
    if not path:
        return None
    if os.path.isdir(path):
        return path
    out = os.path.normpath(out) if out and not os.path.isabs(out) else None
    if out and not os.path.isabs(path) and folder.endswith(os.sep + out):
        started = folder[: -len(out) - 1]
        if os.path.isdir(os.path.join(started, path)):
            return os.path.join(started, path)
    return None


# Command-line types.
def size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        h = w = 0
    if min(h, w) < 1:
        message = f"expected HEIGHTxWIDTH in pixels, e.g. 512x1024; got {text!r}"
        raise argparse.ArgumentTypeError(message)
    return h, w


def side_or_size(text: str) -> tuple[int, int]:
    """N for NxN pixels, or HEIGHTxWIDTH."""
    try:
        return size(f"{text}x{text}" if text.isdigit() else text)
    except argparse.ArgumentTypeError:
        message = f"expected N or HEIGHTxWIDTH in pixels, e.g. 1024 or 512x1024; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def eval_crop(text: str) -> tuple[int, int] | str:
    return "full" if text.lower() == "full" else size(text)


def model_kwargs(text: str) -> dict:
    """`--model-kwargs`: a JSON object of model arguments."""
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        message = f"expected a JSON object like '{{\"backbone_width\": 0.5}}'; got {text!r} ({e})"
        raise argparse.ArgumentTypeError(message) from None
    if not isinstance(kwargs, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return kwargs


def positive(text: str) -> int:
    """A whole number of at least 1: a count (`--epochs`, `--batch-size`, `--accumulate`)."""
    from kseg.predict.standalone import count  # segment.py's, which runs without kseg

    return count(text, 1)


def non_negative(text: str) -> int:
    """A whole number of at least 0, where 0 means none (`--precise-bn-batches`)."""
    from kseg.predict.standalone import count

    return count(text, 0)


def positive_number(text: str) -> float:
    """A number above 0 (`--learning-rate`)."""
    return _number(text, lambda v: v > 0, "a number above 0")


def non_negative_number(text: str) -> float:
    """A number of at least 0 (`--weight-decay`)."""
    return _number(text, lambda v: v >= 0, "a number of at least 0")


def fraction(text: str) -> float:
    """A fraction in [0, 1) (`kseg.export --prune`: the filters removed)."""
    return _number(text, lambda v: 0 <= v < 1, "a fraction from 0 up to, not including, 1")


def share(text: str) -> float:
    """A fraction above 0 and up to 1 (`kseg.export --ode-agreement`: of the pixels)."""
    return _number(text, lambda v: 0 < v <= 1, "a fraction above 0 and up to 1")


def _number(text: str, within, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and within(value)):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def splits(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected split names like train,val, got {text!r}")
    return values


def scales(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive scales like 0.5,1.0,1.5, got {text!r}")
    return values


def widths(text: str) -> tuple[float, ...]:
    try:
        return tuple(positive_number(v) for v in text.split(","))
    except argparse.ArgumentTypeError:
        message = f"expected widths above 0 like 1.5,1.25,1.0; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
