"""Registry of models by name: `create_model(name, **kwargs)` and `list_models()`."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import keras

from kseg.errors import UnknownNameError

_MODELS: dict[str, Callable[..., keras.Model]] = {}


def register_model(name: str) -> Callable:
    """Decorator registering a factory function under `name` (snake_case, unique)."""

    def wrap(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style `pattern`."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs) -> keras.Model:
    """Builds the registered model `name`; keyword arguments override its preset.

    Example:
        >>> model = create_model("contextnet_cn14", num_classes=11)
    """
    if name not in _MODELS:
        raise UnknownNameError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        )
    return _MODELS[name](**kwargs)
