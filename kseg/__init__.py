"""kseg: efficient semantic segmentation with neural-ODE blocks and edge export."""

from kseg import layers, models, ode, utils

__version__ = "0.1.0"
__all__ = ["layers", "models", "ode", "utils"]
