from kseg.models.segnode import segnode_registry  # noqa: F401  (registers the models)
from kseg.models.segnode.segnode import SegNode
from kseg.models.segnode.trajectory import (
    miou_over_time,
    plot_miou_over_time,
    trajectory_logits,
)

__all__ = ["SegNode", "miou_over_time", "plot_miou_over_time", "trajectory_logits"]
