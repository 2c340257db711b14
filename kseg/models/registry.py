"""Registry of models by name: `create_model(name, **kwargs)` and `list_models()`."""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable

import keras

from kseg.errors import UnknownNameError

_MODELS: dict[str, Callable[..., keras.Model]] = {}


def register_model(name: str, model: Callable[..., keras.Model] | None = None, /, **defaults):
    """Registers a model under `name` (snake_case, unique).

    kseg registers each of its models as a class and the arguments that make it the
    paper's network; keywords given to `create_model` override them:

        register_model("hrnetv2_w48", HRNetV2, width=48)

    Without `model`, it is a decorator for a factory function of your own:

        @register_model("my_net")
        def my_net(**kwargs): ...
    """
    if model is None:
        return functools.partial(register_model, name)
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = functools.partial(model, **defaults) if defaults else model
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style `pattern`."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def _entry(name: str) -> Callable[..., keras.Model]:
    if name not in _MODELS:
        raise UnknownNameError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        )
    return _MODELS[name]


def model_class(name: str) -> Callable[..., keras.Model]:
    """The class (or factory function) registered as `name`, without its preset arguments."""
    entry = _entry(name)
    return entry.func if isinstance(entry, functools.partial) else entry


def registered_arguments(name: str) -> dict:
    """The arguments `name` is registered with (`{"width": 48}` for "hrnetv2_w48")."""
    entry = _entry(name)
    return dict(entry.keywords) if isinstance(entry, functools.partial) else {}


def create_model(name: str, **kwargs) -> keras.Model:
    """Builds the registered model `name`; keyword arguments override its preset.

    Example:
        >>> model = create_model("contextnet_cn14", num_classes=11)
    """
    return _entry(name)(**kwargs)
