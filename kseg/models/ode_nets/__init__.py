from kseg.models.ode_nets import ode_nets_registry  # noqa: F401  (registers the models)
from kseg.models.ode_nets.ode_nets import ODEOnlyNet, ResNetGN, ResODENet

__all__ = ["ODEOnlyNet", "ResNetGN", "ResODENet"]
