"""kseg: efficient semantic segmentation with neural-ODE blocks and edge export."""

import importlib

from kseg import data, errors, layers, models, ode, train, utils

__version__ = "0.1.0"
# Imported on first use: they pull in the converters and plotting.
_LAZY = ("export", "features", "predict", "tasks", "recipes")
__all__ = ["data", "errors", "layers", "models", "ode", "train", "utils", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"kseg.{name}")
    raise AttributeError(f"module 'kseg' has no attribute {name!r}")
