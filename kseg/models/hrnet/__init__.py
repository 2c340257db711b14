from kseg.models.hrnet import hrnet_registry  # noqa: F401  (registers the models)
from kseg.models.hrnet.hrnet import HRNetV2, ResidualHRNet

__all__ = ["HRNetV2", "ResidualHRNet"]
