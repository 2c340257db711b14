"""ILSVRC-2012 (ImageNet-1k) classification images as files: their paths and labels, in
the layouts the dataset is distributed and prepared in.

    <root>/train/n01440764/n01440764_10026.JPEG     1,281,167 images in 1,000 folders
    <root>/val/n01440764/ILSVRC2012_val_00000293.JPEG    the validation images by class
                                                  (PyTorch's ImageNet example, valprep.sh)
or the validation images in one folder, their classes in Kaggle's `LOC_val_solution.csv`
beside `train/` and `val/` or in `<root>`, as Kaggle's ImageNet Object Localization
Challenge ships them (`<root>/ILSVRC/Data/CLS-LOC/{train,val}` is found too).

A class's index is its WordNet id's place in sorted order (n01440764 is 0), the order of
torchvision's `ImageFolder`, which HRNet-Image-Classification and timm train with, so that
their published classifiers' logits and kseg's agree.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from kseg.errors import UserError

SPLITS = ("train", "val")
VAL_SOLUTION = "LOC_val_solution.csv"
KAGGLE_FOLDER = os.path.join("ILSVRC", "Data", "CLS-LOC")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
LAYOUT = (
    "ImageNet's layout: <root>/train/<wnid>/*.JPEG, and <root>/val/<wnid>/*.JPEG or "
    f"<root>/val/*.JPEG with {VAL_SOLUTION} (Kaggle's) beside them"
)


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """A split's image paths and int32 labels, and the class names (WordNet ids) the
    labels index."""

    paths: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index) -> ImageFiles:
        index = np.asarray(index)
        return ImageFiles(tuple(self.paths[i] for i in index), self.labels[index], self.classes)

    def spread(self, n: int) -> ImageFiles:
        """`n` of the images, evenly spaced through the sorted list, so that a subset
        (--train-images) keeps the classes' shares."""
        if n >= len(self):
            return self
        return self.take(np.linspace(0, len(self) - 1, n).round().astype(int))


def image_root(data_dir: str) -> str:
    """The folder holding `train/` and `val/`: `data_dir` or its Kaggle sub-folder."""
    for root in (data_dir, os.path.join(data_dir, KAGGLE_FOLDER)):
        if os.path.isdir(os.path.join(root, "train")):
            return root
    raise UserError(f"{data_dir} has no train/ folder of ImageNet; {LAYOUT}")


def _images(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_SUFFIXES))


def _class_folders(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


def classes(data_dir: str) -> tuple[str, ...]:
    """The class names: the folders of train/, sorted."""
    found = _class_folders(os.path.join(image_root(data_dir), "train"))
    if not found:
        raise UserError(
            f"{os.path.join(image_root(data_dir), 'train')} has no class folders; {LAYOUT}"
        )
    return tuple(found)


def list_images(data_dir: str, split: str) -> ImageFiles:
    """The images of `split` ("train" or "val") and their labels."""
    if split not in SPLITS:
        raise ValueError(f"ImageNet's splits are {SPLITS}, got {split!r}")
    names = classes(data_dir)
    index = {c: i for i, c in enumerate(names)}
    folder = os.path.join(image_root(data_dir), split)
    if not os.path.isdir(folder):
        raise UserError(f"{folder} is missing; {LAYOUT}")
    paths, labels = [], []
    subfolders = _class_folders(folder)
    if subfolders:
        unknown = sorted(set(subfolders) - set(index))
        if unknown:
            raise UserError(
                f"{folder} has class folder {unknown[0]} that train/ has not: the classes "
                "are train/'s folders, and each split needs the same"
            )
        for name in subfolders:
            files = _images(os.path.join(folder, name))
            paths += [os.path.join(folder, name, f) for f in files]
            labels += [index[name]] * len(files)
    else:
        by_image = _val_solution(data_dir, folder)
        for f in _images(folder):
            wnid = by_image.get(os.path.splitext(f)[0])
            if wnid is None:
                raise UserError(f"{os.path.join(folder, f)} has no class in {VAL_SOLUTION}")
            if wnid not in index:
                raise UserError(f"{VAL_SOLUTION} gives {f} class {wnid}, which train/ has not")
            paths.append(os.path.join(folder, f))
            labels.append(index[wnid])
    if not paths:
        raise UserError(f"{folder} has no images ({', '.join(IMAGE_SUFFIXES)}); {LAYOUT}")
    return ImageFiles(tuple(paths), np.asarray(labels, np.int32), names)


def _val_solution(data_dir: str, folder: str) -> dict[str, str]:
    """{image id: WordNet id} from Kaggle's LOC_val_solution.csv, whose second column
    lists the image's boxes as "wnid x0 y0 x1 y1 ..." (every box of one class)."""
    places = [
        os.path.join(os.path.dirname(folder), VAL_SOLUTION),
        os.path.join(data_dir, VAL_SOLUTION),
    ]
    path = next((p for p in places if os.path.exists(p)), None)
    if path is None:
        raise UserError(
            f"{folder} holds images but no class folders, and no {VAL_SOLUTION} gives their "
            f"classes (looked in {' and '.join(dict.fromkeys(places))}); {LAYOUT}"
        )
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {row[0]: row[1].split()[0] for row in rows[1:] if len(row) > 1 and row[1].strip()}
