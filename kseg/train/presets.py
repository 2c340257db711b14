"""Training presets: each paper's optimiser and schedule, as a named preset that cites
its source, and the lookup of a model's preset.

Presets are data: each model family writes its papers' values in a TOML file beside its
factories (`kseg/models/<family>/<family>_training.toml`, read by `load_presets`) and gives
them to its models in `<family>_registry.py` with `register_presets`. Presets hold what
the papers state; `None` (a field left out) marks what a paper leaves open, which the
recipes fill in (the README lists those choices). A model without a preset, such as one a
user registers, trains with `DEFAULT_PRESET` (`presets.toml` beside this file).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from kseg.train.optimizers import SGD, Adam, AdamW, RMSprop
from kseg.train.regularizers import CoupledL2
from kseg.train.schedules import PolyDecay, step_schedule


@dataclasses.dataclass(frozen=True)
class TrainingPreset:
    name: str
    source: str  # where the paper states these values
    optimizer: str  # "rmsprop", "sgd", "adam" or "adamw"
    learning_rate: float
    poly_power: float
    epochs: int
    batch_size: int
    aux_weight: float = 0.0  # loss weight of every output but "logits"
    main_weight: float = 1.0  # loss weight of "logits"
    momentum: float = 0.9
    rho: float = 0.9  # RMSprop discounting factor
    epsilon: float = 1e-7
    # Weight decay as the paper's framework applies it: coupled L2 (`wd * w` added to the
    # gradient before momentum or Adam's moments: PyTorch's SGD / RMSprop / Adam
    # `weight_decay`, Caffe, TF-slim's L2 regularisers) for every optimiser but "adamw",
    # whose decay is decoupled (Loshchilov & Hutter 2019; Keras' `weight_decay`).
    # decay_scope "all": every trainable weight (PyTorch's `model.parameters()`);
    # "kernels": convolution and dense kernels only (TF-slim's `weights_regularizer`), the
    # depthwise ones too only with decay_depthwise.
    weight_decay: float | None = None
    decay_scope: str = "all"
    decay_depthwise: bool = True
    # "poly" (PolyDecay over the run) or "plateau": a constant rate that
    # `plateau_callback` divides by 1 / plateau_factor when the validation accuracy stops
    # improving for `plateau_patience` epochs.
    # "step": the rate times step_factor ** (number of `step_epochs` passed).
    schedule: str = "poly"
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    step_epochs: tuple[int, ...] = ()
    step_factor: float = 0.1
    nesterov: bool = False
    dropout: float | None = None  # where a paper states it (a model argument)
    # Classification: which images choose the best epoch (and drive a plateau schedule):
    # "holdout", part of the training set (ChoiceNet's protocol, and kseg's for every
    # preset: the test set is only for `evaluate`), or "test" (what the ODE nets' official
    # code does; a leak kseg does not default to); and the training augmentation,
    # "crop_jitter_flip" (ODE nets) or "crop_flip".
    validation: str = "holdout"
    augmentation: str = "crop_jitter_flip"
    # Segmentation: the training crop (None: the dataset recipe's) and, where a paper
    # validates on centre crops, their size (None: whole images).
    crop: tuple[int, int] | None = None
    eval_crop: tuple[int, int] | None = None
    # The loss (`kseg.tasks.LOSSES`) and a weight per class where the paper's code uses
    # them (HRNet on Cityscapes: OHEM with its class weights).
    loss: str = "cross_entropy"
    class_weights: tuple[float, ...] | None = None

    def make_schedule(self, total_steps: int, steps_per_epoch: int | None = None):
        """The learning rate of `make_optimizer`: poly over `total_steps` steps, step (needs
        `steps_per_epoch`), or for plateau a number that `ResumableReduceLROnPlateau`
        lowers."""
        if self.schedule == "poly":
            return PolyDecay(self.learning_rate, total_steps, power=self.poly_power)
        if self.schedule == "plateau":
            return self.learning_rate
        if self.schedule == "step":
            if not steps_per_epoch:
                raise ValueError(
                    f"preset {self.name!r} steps its rate per epoch: give steps_per_epoch"
                )
            return step_schedule(
                self.learning_rate, self.step_epochs, self.step_factor, steps_per_epoch
            )
        raise ValueError(f"unknown schedule {self.schedule!r}: poly, plateau or step")

    def make_optimizer(
        self, total_steps: int, steps_per_epoch: int | None = None
    ) -> keras.optimizers.Optimizer:
        """The optimiser with its schedule (`make_schedule`). Only "adamw" carries the
        weight decay; the others' is coupled L2, which `apply_weight_decay` puts on the
        model's weights. The optimisers are Keras' with each weight's update as one
        TensorFlow op (`kseg.train.optimizers`)."""
        schedule = self.make_schedule(total_steps, steps_per_epoch)
        if self.optimizer == "rmsprop":
            return RMSprop(
                schedule,
                rho=self.rho,
                momentum=self.momentum,
                epsilon=self.epsilon,
            )
        if self.optimizer == "sgd":
            return SGD(
                schedule,
                momentum=self.momentum,
                nesterov=self.nesterov,
            )
        if self.optimizer == "adam":
            return Adam(schedule)
        if self.optimizer == "adamw":
            return AdamW(schedule, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer {self.optimizer!r}: rmsprop, sgd, adam or adamw")


def apply_weight_decay(model: keras.Model, preset: TrainingPreset) -> int:
    """Puts the preset's coupled L2 on `model`'s weights (none for "adamw", whose decay the
    optimiser applies decoupled) and returns how many weights carry it.

    Each weight gets the regulariser `CoupledL2(wd)`: its loss term wd / 2 * sum(w^2) adds
    exactly `wd * w` to the gradient, PyTorch's `weight_decay`. As a loss term it is
    scaled like the data loss under `tf.distribute` and by loss scaling. Variables keep
    no regulariser in a `.keras` file, so the runner applies it again on resuming."""
    if not preset.weight_decay or preset.optimizer == "adamw":
        return 0
    if preset.decay_scope not in ("all", "kernels"):
        raise ValueError(f"unknown decay_scope {preset.decay_scope!r}: all or kernels")
    l2 = CoupledL2(preset.weight_decay)
    count = 0
    for layer in model._flatten_layers():
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        for variable in layer._trainable_variables:  # the layer's own, not its sublayers'
            kernel = variable.path.rsplit("/", 1)[-1] == "kernel"
            if preset.decay_scope == "kernels" and not kernel:
                continue
            if depthwise and kernel and not preset.decay_depthwise:
                continue
            variable.regularizer = l2
            count += 1
    return count


def describe_weight_decay(model: keras.Model, preset: TrainingPreset) -> str:
    """E.g. "weight decay: coupled L2 0.0005 on 310 weights"."""
    if not preset.weight_decay:
        return "no weight decay"
    if preset.optimizer == "adamw":
        return f"weight decay: decoupled {preset.weight_decay:g} (AdamW)"
    count = sum(v.regularizer is not None for v in model.trainable_variables)
    return f"weight decay: coupled L2 {preset.weight_decay:g} on {count} weights"


def load_presets(path: str | os.PathLike) -> dict[str, TrainingPreset]:
    """The presets of the TOML file `path`, by name: one table per preset, its key the
    preset's name and its entries `TrainingPreset`'s fields (arrays become tuples).

    Example:
        >>> presets = load_presets("my_presets.toml")  # [mine] optimizer = "sgd" ...
        >>> register_presets("my_model", presets["mine"])
    """
    path = Path(path)
    with path.open("rb") as f:
        tables = tomllib.load(f)
    fields = {f.name for f in dataclasses.fields(TrainingPreset)} - {"name"}
    presets = {}
    for name, table in tables.items():
        unknown = sorted(set(table) - fields)
        if unknown:
            raise ValueError(
                f"{path}: preset [{name}] has unknown fields {unknown}; a preset's fields "
                f"are TrainingPreset's: {sorted(fields)}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
        try:
            presets[name] = TrainingPreset(name=name, **values)
        except TypeError as e:  # a required field left out
            raise ValueError(f"{path}: preset [{name}]: {e}") from None
    return presets


PRESETS: dict[str, TrainingPreset] = {}
# Registry name of a model -> its preset, or {dataset: preset, None: for other datasets}.
_MODEL_PRESETS: dict[str, TrainingPreset | dict] = {}

DEFAULT_PRESET = load_presets(Path(__file__).with_name("presets.toml"))["default"]

# HRNet-OCR's auxiliary (soft object region) loss weight, Yuan et al. 2020 section 3.4.
OCR_AUX_WEIGHT = 0.4


def with_ocr_aux(preset: TrainingPreset) -> TrainingPreset:
    """`preset` with the auxiliary loss of OCR's soft object regions."""
    return dataclasses.replace(
        preset,
        aux_weight=OCR_AUX_WEIGHT,
        source=f"{preset.source}; OCR auxiliary loss weight 0.4 (Yuan et al. 2020)",
    )


def register_presets(models, preset: TrainingPreset | dict) -> None:
    """Gives the registry names `models` the `preset`, or a dict {dataset: preset} with the
    key None for any other dataset. Every preset is also listed by name in `PRESETS`."""
    for p in preset.values() if isinstance(preset, dict) else [preset]:
        PRESETS.setdefault(p.name, p)
    for name in [models] if isinstance(models, str) else models:
        _MODEL_PRESETS[name] = preset


def has_preset(model_name: str) -> bool:
    import kseg.models  # noqa: F401  (the families register their presets)

    return model_name in _MODEL_PRESETS


def preset_for(model_name: str, dataset: str | None = None) -> TrainingPreset:
    """The preset of the paper that registry model `model_name` comes from, for `dataset`
    where the paper trains differently per dataset; `DEFAULT_PRESET` for a model without
    one (see `has_preset`)."""
    if not has_preset(model_name):
        return DEFAULT_PRESET
    preset = _MODEL_PRESETS[model_name]
    if isinstance(preset, dict):
        preset = preset.get(dataset, preset[None])
    return preset
