"""The U-Net topology (Ronneberger et al. 2015, Fig. 5 of ChoiceNet) with a pluggable
level block, shared by kseg's U-Nets."""

from __future__ import annotations

from collections.abc import Callable

import keras

from kseg.layers.resize import ResizeLike

LevelBlock = Callable[..., keras.KerasTensor]  # (x, filters, name) -> x with `filters` channels


def unet_graph(inputs, level: LevelBlock, num_classes: int, width: int = 64, levels: int = 4):
    """Logits of a U-Net on `inputs`: `levels` steps down (level block, then 2x2 max-pool,
    its input kept for the skip), a bottom level block, and as many steps up (bilinear
    resize to the skip, concatenation, level block); level l has width * 2**l channels.
    A 1x1 conv gives the class logits (float32, layer `head_logits`)."""
    x, skips = inputs, []
    for i in range(levels):
        x = level(x, width * 2**i, name=f"down{i}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(x)
    x = level(x, width * 2**levels, name="bottom")
    for i in reversed(range(levels)):
        skip = skips[i]
        x = ResizeLike(name=f"up{i}_resize")([x, skip])
        x = keras.layers.Concatenate(name=f"up{i}_concat")([x, skip])
        x = level(x, width * 2**i, name=f"up{i}")
    x = keras.layers.Conv2D(num_classes, 1, name="head_classifier")(x)
    return keras.layers.Activation("linear", dtype="float32", name="head_logits")(x)
