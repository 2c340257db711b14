"""Base classes of kseg's functional models (segmentation, classification): their
argument and input checks and their config live here.

Every model class lays out its constructor in keras-hub's sections: its own argument
checks, then `# === Functional Model ===` (the graph, opened by `image_input` and ending
in `super().__init__(inputs, outputs)`), then `# === Config ===`, where
`self._store_config(locals())` keeps each constructor argument as the attribute of the
same name (`model.width`, ...).
`ImageModel.get_config` reads those attributes back, so a model's config is its
arguments, and Keras rebuilds it with `cls(**config)`.
"""

from __future__ import annotations

import inspect

import keras

from kseg.errors import UserError
from kseg.layers.recompute import call_functional, recomputes
from kseg.ode.block import ODEBlock
from kseg.ode.callbacks import ode_blocks
from kseg.ode.config import SolverConfig, upgrade_config


class ModelArgumentError(UserError, TypeError):
    """An argument a model does not take (a misspelt `--model-kwargs` key)."""


class InputSizeError(UserError, ValueError):
    """An image shape the model cannot take; the message says which sizes it can."""


def check_model_args(name: str, num_classes, image_shape, multiple: int = 1) -> None:
    """The checks every model's constructor makes: a positive int of classes and an image
    shape (height, width, channels) whose known sides are multiples of `multiple`."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if len(image_shape) != 3:
        raise ValueError(f"{name}: image_shape is (height, width, channels), got {image_shape}")
    check_image_shape((None, *image_shape), multiple, None, name)


def image_input(kwargs: dict, default_name: str, num_classes, image_shape, multiple: int = 1):
    """The opening of every model's functional graph: the model's name (popped from the
    constructor's `kwargs`, else `default_name`), the checks of `check_model_args`, and the
    image input layer. Returns (name, inputs)."""
    name = kwargs.pop("name", default_name)
    check_model_args(name, num_classes, image_shape, multiple)
    return name, keras.Input(shape=image_shape, name="image")


def check_image_shape(shape, multiple: int, channels: int | None, model_name: str) -> None:
    """Raises InputSizeError unless `shape` is (batch, H, W, C) with H, W multiples of `multiple`.

    Unknown (None) dimensions pass; they are checked when the model is called on data.
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise InputSizeError(
            f"{model_name} takes a batch of channels-last images (batch, height, width, "
            f"channels); got an input of shape {shape}. Add a batch axis to a single image."
        )
    _, h, w, c = shape
    if channels is not None and c is not None and c != channels:
        raise InputSizeError(
            f"{model_name} was built for {channels}-channel images; got {c} channels."
        )
    bad = [d for d in (h, w) if d is not None and d % multiple]
    if bad:
        fit = tuple(-(-d // multiple) * multiple if d is not None else None for d in (h, w))
        raise InputSizeError(
            f"{model_name} takes images whose height and width are multiples of {multiple}; "
            f"got {h}x{w}. Resize or pad the image, e.g. to {fit[0]}x{fit[1]}."
        )


class ImageModel(keras.Model):
    """A functional model of images (N, H, W, C); `call` checks the input first.

    Subclasses build their graph and call `super().__init__(inputs, outputs, ...)`, then may
    set `input_multiple`: the number that image height and width must be divisible by.
    Calling the model on an image of another size raises a ValueError that names the
    allowed sizes. `task` ("segmentation" or "classification") tells recipes, tests and the
    exporter what the logits are.
    """

    input_multiple: int = 1
    task: str = "segmentation"
    # Constructor arguments that are not part of the config (e.g. weights loaded once at
    # construction: a saved model carries its own).
    config_excludes: frozenset[str] = frozenset()

    # What keras.Model's functional constructor takes; Keras ignores any other keyword
    # silently, so a misspelt model argument would otherwise build the default model.
    _MODEL_KWARGS = frozenset({"inputs", "outputs", "name", "trainable", "dtype"})

    def __init__(self, *args, **kwargs):
        unknown = sorted(set(kwargs) - self._MODEL_KWARGS)
        if unknown:
            raise ModelArgumentError(
                f"{type(self).__name__} got unknown argument(s): {', '.join(unknown)}. "
                f"See help(kseg.models.{type(self).__name__}) for the arguments it takes."
            )
        super().__init__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        check_image_shape(inputs.shape, self.input_multiple, self.input_shape[-1], self.name)
        if recomputes(training) and mask is None:
            return call_functional(self, inputs, training=training)
        return super().call(inputs, training=training, mask=mask)

    def _aggregate_additional_loss(self, loss):
        """Keras' hook that turns each added loss (each decayed weight's regulariser) into
        one scalar before they are summed with the compiled loss. Keras sums every one,
        a scalar too: a reduction in the traced step, and a reshape and a tile in its
        gradient, for each decayed weight. A float scalar is its own sum, and is taken as
        it is; anything else takes Keras' path."""
        if loss.shape.rank == 0 and keras.backend.is_float_dtype(loss.dtype):
            return loss
        return super()._aggregate_additional_loss(loss)

    @classmethod
    def _argument_names(cls) -> list[str]:
        """The constructor's named arguments that the config holds."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [
            p.name
            for p in params
            if p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.name not in cls.config_excludes
        ]

    def _store_config(self, arguments: dict) -> None:
        """The `# === Config ===` section: each constructor argument from `arguments` (the
        constructor's `locals()`, after any normalising) as the attribute of the same name,
        lists as tuples (a config read back from JSON has lists). Arguments the class
        exposes as a property (an ODE model's `solver`) are read from the model instead."""
        for name in self._argument_names():
            if isinstance(getattr(type(self), name, None), property):
                continue
            value = arguments[name]
            setattr(self, name, tuple(value) if isinstance(value, list) else value)

    def get_config(self):
        """`name`, `trainable` and the constructor's arguments, read from the attributes of
        the same names (see the module docstring)."""
        config = {"name": self.name, "trainable": self.trainable}
        for name in self._argument_names():
            if not hasattr(self, name):
                raise AttributeError(
                    f"{type(self).__name__} has no attribute {name!r} for its config: end its "
                    "constructor with self._store_config(locals()) (docs/models.md)"
                )
            config[name] = getattr(self, name)
        return config


class SegmentationModel(ImageModel):
    """Images (N, H, W, C) to per-pixel logits (N, H, W, classes)."""

    task: str = "segmentation"


class ClassificationModel(ImageModel):
    """Images (N, H, W, C) to class logits (N, classes)."""

    task: str = "classification"


@keras.saving.register_keras_serializable(package="kseg")
class GraphImageModel(ImageModel):
    """A kseg model kept as its layer graph, with its `input_multiple` and `task`.

    What graph rewrites such as `kseg.export.prune_filters` return: the architecture is no
    longer one a model class can rebuild from its arguments (a pruned ContextNet has
    per-layer channel counts), so the `.keras` file stores the graph itself, like a
    `keras.Model(inputs, outputs)`, plus the input size rule and task of the original.

    Args:
        *args, **kwargs: as `keras.Model(inputs, outputs, name=...)`.
        input_multiple: image height and width must be multiples of this.
        task: "segmentation" or "classification".
    """

    def __init__(self, *args, input_multiple: int = 1, task: str = "segmentation", **kwargs):
        super().__init__(*args, **kwargs)
        if task not in ("segmentation", "classification"):
            raise ValueError(f"task must be 'segmentation' or 'classification', got {task!r}")
        self.input_multiple = int(input_multiple)
        self.task = task

    def get_config(self):
        # The layer graph (Keras's functional config, which follows ImageModel in this
        # class's resolution order), not constructor arguments.
        config = super(ImageModel, self).get_config()
        return {**config, "input_multiple": self.input_multiple, "task": self.task}


class ODEModel:
    """What kseg's ODE models share (mixed into their model class): one solver, held by
    their ODE blocks, which `set_solver` changes on every block and `get_config` reads
    back (the `solver` property), so that a changed solver survives a `.keras` round trip."""

    def set_solver(self, *args, **kwargs) -> None:
        """`ODEBlock.set_solver` on every ODE block of the model."""
        for block in ode_blocks(self):
            block.set_solver(*args, **kwargs)

    @property
    def ode_block(self) -> ODEBlock:
        """The model's ODE block, for models with one (SegNode, the ODE Nets)."""
        blocks = ode_blocks(self)
        if len(blocks) != 1:
            raise ValueError(f"{self.name} has {len(blocks)} ODE blocks; use ode_blocks(model)")
        return blocks[0]

    @property
    def solver(self) -> SolverConfig:
        """The solver of the model's ODE blocks."""
        solvers = {block.solver for block in ode_blocks(self)}
        if len(solvers) > 1:
            raise ValueError(
                f"{self.name}'s ODE blocks have different solvers {sorted(solvers, key=str)}; "
                "its config holds one: call the model's set_solver to set every block"
            )
        return solvers.pop()

    def get_config(self):
        return {**super().get_config(), "solver": self.solver.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**upgrade_config(config))  # files saved before SolverConfig
