"""kseg: efficient semantic segmentation with neural-ODE blocks and edge export."""

from kseg import data, layers, models, ode, train, utils

__version__ = "0.1.0"
__all__ = ["data", "layers", "models", "ode", "train", "utils"]
