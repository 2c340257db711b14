"""What `kseg.predict` writes: palette label PNGs, overlays, Cityscapes labelIds and
per-class probabilities. The writer and the colours are the standalone `segment.py`'s
(`kseg.predict.standalone`), so kseg and an export folder write the same files."""

from __future__ import annotations

import numpy as np

from kseg.predict.standalone import ImageWriter, default_palette, overlay, softmax

__all__ = ["ImageWriter", "default_palette", "overlay", "read_palette", "softmax"]


def read_palette(path: str) -> np.ndarray:
    """The palette of a `classes.txt` (`name R G B` lines), read as kseg's folder datasets
    read it."""
    from kseg.data.folder import read_classes

    palette = np.zeros((256, 3), np.uint8)
    colours = read_classes(path).palette
    palette[: len(colours)] = colours
    return palette
