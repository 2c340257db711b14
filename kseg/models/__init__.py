"""kseg's models, by class and by registry name."""

from kseg.models.contextnet import ContextNet
from kseg.models.registry import create_model, list_models, register_model

__all__ = ["ContextNet", "create_model", "list_models", "register_model"]
