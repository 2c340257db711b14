from kseg.models.unet import unet_registry  # noqa: F401  (registers the models)
from kseg.models.unet.unet import UNet

__all__ = ["UNet"]
