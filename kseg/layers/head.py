"""Classifier head shared by the segmentation models."""

from __future__ import annotations

import keras

from kseg.layers.resize import Upsample


def segmentation_head(
    x,
    num_classes: int,
    dropout: float = 0.0,
    upsample: int = 1,
    name: str = "head",
):
    """Dropout -> 1x1 conv to `num_classes` logits (with bias) -> bilinear upsampling.

    Layers: `{name}_dropout`, `{name}_classifier`, `{name}_upsample`. The output is logits
    (no softmax), float32 even under mixed precision.
    """
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = keras.layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)
    if upsample > 1:
        x = Upsample(upsample, name=f"{name}_upsample")(x)
    return keras.layers.Activation("linear", dtype="float32", name=f"{name}_logits")(x)
