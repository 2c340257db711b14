"""What `kseg.predict` writes: palette label PNGs, overlays, Cityscapes labelIds and
per-class probabilities. The writer and the colours are the standalone `segment.py`'s
(`kseg.predict.standalone`), so kseg and an export folder write the same files."""

from __future__ import annotations

import numpy as np

from kseg.predict.standalone import ImageWriter, default_palette, overlay, softmax

__all__ = ["ImageWriter", "default_palette", "overlay", "read_palette", "softmax"]


def read_palette(path: str) -> np.ndarray:
    """The palette of a `classes.txt` (`name R G B` lines) or a labelling tool's
    `labelmap.txt`, read as kseg's folder datasets read them."""
    from kseg.data.folder import read_class_list

    palette = np.zeros((256, 3), np.uint8)
    colours = read_class_list(path).palette
    palette[: len(colours)] = colours
    return palette
