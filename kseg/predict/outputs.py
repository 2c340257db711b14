"""What `kseg.predict` writes: palette label PNGs, overlays, Cityscapes labelIds and
per-class probabilities. The writer and the colours are the standalone `segment.py`'s
(`kseg.predict.standalone`), so kseg and an export folder write the same files."""

from __future__ import annotations

import glob
import os

import numpy as np

from kseg.errors import UserError
from kseg.predict import standalone
from kseg.predict.standalone import default_palette, overlay, softmax

__all__ = ["ImageWriter", "OutputFolder", "default_palette", "overlay", "read_palette", "softmax"]


class OutputFolder(standalone.OutputFolder):
    """`segment.py`'s output folder, whose refusals are kseg's `UserError`."""

    error = UserError

    def adopt_unrecorded(self) -> None:
        """Records the outputs in the folder as kseg's when it has no record yet: for a
        folder only kseg writes to (a recipe run's `predictions/`), filled by a kseg older
        than the record."""
        if os.path.exists(os.path.join(self.folder, self.RECORD)):
            return
        for path in glob.glob(os.path.join(self.folder, "**", "*"), recursive=True):
            if path.endswith(standalone.OUTPUT_SUFFIXES) and os.path.isfile(path):
                self.written[os.path.relpath(path, self.folder)] = standalone.sha256(path)
        self.close()


class ImageWriter(standalone.ImageWriter):
    """`segment.py`'s writer, into an `OutputFolder` of kseg's."""

    output_folder = OutputFolder


def read_palette(path: str, num_classes: int | None = None) -> np.ndarray:
    """The palette of a `classes.txt` (`name R G B` lines) or a labelling tool's
    `labelmap.txt`, read as kseg's folder datasets read them; a file naming other than
    `num_classes` classes (the model's) is a `UserError`."""
    from kseg.data.folder import read_class_list

    colours = read_class_list(path).palette
    standalone.check_class_count(path, len(colours), num_classes, UserError)
    return padded(colours)


def padded(colours: np.ndarray) -> np.ndarray:
    """uint8[256, 3]: a class list's colours (uint8[K, 3]), black after them."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(colours)] = colours
    return palette
