from kseg.models.deeplab import deeplab_registry  # noqa: F401  (registers the models)
from kseg.models.deeplab.cooperative import CrossCooperative, cooperative_mix
from kseg.models.deeplab.deeplab import DeepLabV3Plus

__all__ = ["CrossCooperative", "DeepLabV3Plus", "cooperative_mix"]
