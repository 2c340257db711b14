from kseg.models.choicenet import choicenet_registry  # noqa: F401  (registers the models)
from kseg.models.choicenet.choicenet import ChoiceNet

__all__ = ["ChoiceNet"]
