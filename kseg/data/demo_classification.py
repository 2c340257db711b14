"""Real image-classification data that ships here, for the `--demo` of the classification
recipes when CIFAR-10 is absent, and the default transfer target of the ODE-features recipe.

Source: Fashion-MNIST (70,000 real 28x28 photos of clothes, from Debian's
`dataset-fashion-mnist` package) when installed, else scikit-learn's handwritten digits
0-4 (real 8x8 scans). Target: scikit-learn's digits, without the classes the source
trained on (all ten digits after Fashion-MNIST; 5-9 after digits 0-4), so that the
source and the target share no class, as CIFAR-10 and Tiny-ImageNet in the paper.
Images become 32x32 RGB uint8 like CIFAR-10's.
"""

from __future__ import annotations

import dataclasses
import gzip
import os

import numpy as np
from PIL import Image

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle boot")  # fmt: skip


@dataclasses.dataclass
class ImageSet:
    """Images (N, 32, 32, 3) uint8, labels (N,) int32 from 0, and where they come from."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def _idx(path: str, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def _to_rgb32(gray: np.ndarray) -> np.ndarray:
    """(N, h, w) uint8 greyscale to (N, 32, 32, 3): 28x28 padded by 2, others resized."""
    if gray.shape[1:] == (28, 28):
        out = np.pad(gray, ((0, 0), (2, 2), (2, 2)))
    else:
        out = np.stack(
            [np.asarray(Image.fromarray(g).resize((32, 32), Image.BILINEAR)) for g in gray]
        )
    return np.repeat(out[..., None], 3, axis=-1)


def fashion_mnist_available(root: str = FASHION_MNIST_DIR) -> bool:
    return os.path.exists(os.path.join(root, "train-images-idx3-ubyte.gz"))


def load_fashion_mnist(split: str = "train", root: str = FASHION_MNIST_DIR) -> ImageSet:
    """Fashion-MNIST's 60,000 train or 10,000 test images from its IDX files."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), 16).reshape(-1, 28, 28)
    labels = _idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), 8).astype(np.int32)
    return ImageSet(f"Fashion-MNIST {split}", _to_rgb32(images), labels, FASHION_CLASSES)


def load_digits_set(digits: tuple[int, ...] = tuple(range(10))) -> ImageSet:
    """scikit-learn's 1,797 real 8x8 digit scans of the given digits, labels 0..len-1."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, digits)
    gray = np.clip(data.images[keep] * 16, 0, 255).astype(np.uint8)
    labels = np.searchsorted(np.array(sorted(digits)), data.target[keep]).astype(np.int32)
    name = "scikit-learn digits " + ("0-9" if len(digits) == 10 else f"{min(digits)}-{max(digits)}")
    return ImageSet(name, _to_rgb32(gray), labels, tuple(str(d) for d in sorted(digits)))


def demo_source(train: int, test: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test) of the demo source task: Fashion-MNIST if installed, else digits 0-4.

    Fashion-MNIST draws `train` / `test` images from its own splits. The 901 digits 0-4 give
    `train` / `test` images drawn without overlap, or, when more are asked for than exist,
    all 901 split in the proportion asked for.
    """
    rng = np.random.default_rng(seed)
    if fashion_mnist_available():
        sets = []
        for split, n in (("train", train), ("test", test)):
            full = load_fashion_mnist(split)
            pick = np.sort(rng.permutation(len(full.labels))[:n])
            sets.append(ImageSet(full.name, full.images[pick], full.labels[pick], full.classes))
        return sets[0], sets[1]
    full = load_digits_set((0, 1, 2, 3, 4))
    order = rng.permutation(len(full.labels))
    if train + test > len(order):
        train = int(len(order) * train / (train + test))
        test = len(order) - train
    parts = (np.sort(order[:train]), np.sort(order[train : train + test]))
    return tuple(
        ImageSet(f"{full.name} {s}", full.images[p], full.labels[p], full.classes)
        for s, p in zip(("train", "test"), parts, strict=True)
    )


def demo_target(source_name: str) -> ImageSet:
    """scikit-learn's digits that are not classes of the source named `source_name`."""
    if source_name.startswith("scikit-learn digits 0-4"):
        return load_digits_set((5, 6, 7, 8, 9))
    if source_name.startswith("scikit-learn digits"):
        raise ValueError(f"no embedded target shares no class with {source_name!r}")
    return load_digits_set()
