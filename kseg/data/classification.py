"""Image-classification datasets in their official download layouts, as uint8 arrays.

Used by the ODE feature nets (Carrara et al. 2019: CIFAR-10, SVHN, Tiny-ImageNet) and ChoiceNet
(Rayhan et al.: CIFAR-10/100). Each loader returns `(images uint8 NxHxWx3, labels int32 N)`.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
from PIL import Image

from kseg.data.errors import DatasetLayoutError
from kseg.errors import UnknownNameError


def _require(name: str, path: str, layout: str, source: str) -> str:
    if not os.path.exists(path):
        raise DatasetLayoutError(name, f"missing {path}", layout, source)
    return path


def _check_split(name: str, split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise UnknownNameError(f"{name} has splits {splits}, not {split!r}")


CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html ('python version'); untar into <root>"


def load_cifar(root: str, split: str = "train", classes: int = 10):
    """CIFAR-10 or CIFAR-100 (fine labels): 50,000 train and 10,000 test 32x32 images."""
    if classes not in (10, 100):
        raise ValueError(f"CIFAR has 10 or 100 classes, not {classes}")
    name = f"CIFAR-{classes}"
    _check_split(name, split, ("train", "test"))
    if classes == 10:
        layout = "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}"
        folder = os.path.join(root, "cifar-10-batches-py")
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        key = b"labels"
    else:
        layout = "<root>/cifar-100-python/{train,test}"
        folder = os.path.join(root, "cifar-100-python")
        files, key = [split], b"fine_labels"
    images, labels = [], []
    for f in files:
        path = _require(name, os.path.join(folder, f), layout, CIFAR_SOURCE)
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[key], np.int32))
    return np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels)


def load_svhn(root: str, split: str = "train"):
    """SVHN cropped digits (format 2): 73,257 train and 26,032 test; label 10 becomes 0."""
    from scipy.io import loadmat

    _check_split("SVHN", split, ("train", "test", "extra"))
    path = _require(
        "SVHN",
        os.path.join(root, f"{split}_32x32.mat"),
        "<root>/{train,test,extra}_32x32.mat",
        "http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)",
    )
    mat = loadmat(path)
    images = np.asarray(mat["X"], np.uint8).transpose(3, 0, 1, 2)
    labels = np.asarray(mat["y"], np.int32).reshape(-1) % 10
    return images, labels


TINY_LAYOUT = """\
<root>/tiny-imagenet-200/
  wnids.txt
  train/<wnid>/images/<wnid>_<k>.JPEG
  val/images/val_<k>.JPEG
  val/val_annotations.txt        (file name, wnid, box)"""


def load_tiny_imagenet(root: str, split: str = "train"):
    """Tiny-ImageNet-200: 100,000 train and 10,000 val 64x64 images, 200 classes."""
    _check_split("Tiny-ImageNet", split, ("train", "val"))
    base = os.path.join(root, "tiny-imagenet-200")
    source = "http://cs231n.stanford.edu/tiny-imagenet-200.zip; unzip into <root>"
    with open(_require("Tiny-ImageNet", os.path.join(base, "wnids.txt"), TINY_LAYOUT, source)) as f:
        wnids = [line.strip() for line in f if line.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        pairs = []
        for w in wnids:
            folder = _require(
                "Tiny-ImageNet", os.path.join(base, "train", w, "images"), TINY_LAYOUT, source
            )
            pairs += [(os.path.join(folder, n), index[w]) for n in sorted(os.listdir(folder))]
    else:
        ann = _require(
            "Tiny-ImageNet", os.path.join(base, "val", "val_annotations.txt"), TINY_LAYOUT, source
        )
        with open(ann) as f:
            rows = [line.split("\t") for line in f if line.strip()]
        pairs = [(os.path.join(base, "val", "images", r[0]), index[r[1]]) for r in rows]
    images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.uint8) for p, _ in pairs])
    return images, np.array([c for _, c in pairs], np.int32)
