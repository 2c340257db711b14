"""What `kseg.predict` writes: palette label PNGs, overlays, Cityscapes labelIds and
per-class probabilities."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def default_palette(num_classes: int) -> np.ndarray:
    """uint8[256, 3]: Cityscapes' colours for 19 classes, imgviz's label colours else."""
    palette = np.zeros((256, 3), np.uint8)
    if num_classes == 19:
        from kseg.data.cityscapes import Cityscapes

        palette[:19] = Cityscapes.palette
    else:
        import imgviz

        palette[:] = imgviz.label_colormap()
    return palette


def read_palette(path: str) -> np.ndarray:
    """The palette of a `classes.txt` (`name R G B` lines)."""
    from kseg.data.folder import read_classes

    palette = np.zeros((256, 3), np.uint8)
    _, colours = read_classes(path)
    palette[: len(colours)] = colours
    return palette


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The image half-blended with the label colours."""
    return (0.5 * image + 0.5 * palette[labels]).astype(np.uint8)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class ImageWriter:
    """Writes the outputs of one image under `folder`, keeping the input's relative path.

    Args:
        folder: the output folder.
        palette: uint8[256, 3] label colours.
        label_ids: also write Cityscapes labelIds (`<stem>_labelIds.png`).
        probabilities: also write per-class probabilities (`<stem>_prob.npz`, float16).
    """

    def __init__(self, folder, palette, label_ids=False, probabilities=False):
        self.folder, self.palette = folder, palette
        self.label_ids, self.probabilities = label_ids, probabilities

    def write(self, name: str, image: np.ndarray, logits: np.ndarray) -> None:
        base = os.path.join(self.folder, os.path.splitext(name)[0])
        os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
        labels = logits.argmax(-1).astype(np.uint8)
        png = Image.fromarray(labels, mode="P")
        png.putpalette(self.palette.reshape(-1).tolist())
        png.save(f"{base}_pred.png")
        Image.fromarray(overlay(image, labels, self.palette)).save(
            f"{base}_overlay.jpg", quality=90
        )
        if self.label_ids:
            from kseg.data.cityscapes import Cityscapes

            Image.fromarray(Cityscapes.train_ids_to_label_ids(labels)).save(f"{base}_labelIds.png")
        if self.probabilities:
            np.savez_compressed(
                f"{base}_prob.npz", probabilities=softmax(logits).astype(np.float16)
            )
