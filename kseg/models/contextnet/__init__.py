from kseg.models.contextnet import contextnet_registry  # noqa: F401  (registers the variants)
from kseg.models.contextnet.contextnet import ContextNet
from kseg.models.contextnet.contextnet_presets import CONTEXTNET_VARIANTS

__all__ = ["CONTEXTNET_VARIANTS", "ContextNet"]
