"""kseg: efficient semantic segmentation with neural-ODE blocks and edge export."""

import gc
import importlib

# Importing TensorFlow and tfp makes half a million objects and almost no garbage, and the
# cyclic collector's passes over them are a large part of the import (bench/RESULTS.md,
# "startup"): it pauses until kseg's modules are in, then runs as the caller had it.
_collecting = gc.isenabled()
gc.disable()
try:
    from kseg import data, errors, layers, models, ode, train, utils
finally:
    if _collecting:
        gc.enable()

__version__ = "0.1.0"
# Imported on first use: they pull in the converters and plotting.
_LAZY = ("export", "features", "predict", "tasks", "recipes")
__all__ = ["data", "errors", "layers", "models", "ode", "train", "utils", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"kseg.{name}")
    raise AttributeError(f"module 'kseg' has no attribute {name!r}")
