"""Inference on any images, folders and videos with any model file kseg writes
(`python -m kseg.predict`)."""

from kseg.predict.backends import Backend, open_model
from kseg.predict.inputs import expand_inputs
from kseg.predict.predictor import Predictor, segment_images, segment_video

__all__ = [
    "Backend",
    "Predictor",
    "expand_inputs",
    "open_model",
    "segment_images",
    "segment_video",
]
