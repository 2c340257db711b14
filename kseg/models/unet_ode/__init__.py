from kseg.models.unet_ode import unet_ode_registry  # noqa: F401  (registers the models)
from kseg.models.unet_ode.unet_ode import NODEsUNet, UNode

__all__ = ["NODEsUNet", "UNode"]
