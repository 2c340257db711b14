"""Your own data as annotation platforms export it in the COCO format: images and a JSON
file of their objects' polygons or run-length masks, read as it is.

    DIR/annotations/instances_*.json   CVAT ("COCO 1.0"), the COCO dataset itself
    DIR/{train,valid,test}/_annotations.coco.json   Roboflow ("COCO Segmentation")
    DIR/result.json                    Label Studio ("COCO")

Each annotation file is a split by its name or its folder's (train, val / valid /
validation, test); one of no split's name (CVAT's `instances_default.json`) is the
training pool, a tenth of its images held out for validation. Images are found beside the
file, in an `images/` folder, or in a folder of the root (COCO's `train2017/`), by the
name the file gives or by its file name alone (Label Studio's server paths). The
classes are "background" (class 0, what no object covers) and the categories in the
order of their ids. Each image's objects are decoded by the official COCO API
(pycocotools: polygons, run-length masks, crowds) and drawn in the file's order, a later
object over an earlier one, as the tools' own mask exports draw them.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re

import numpy as np
import tensorflow as tf

from kseg.data.base import Sample, size_problem
from kseg.data.folder import ClassList, FolderDataset

BACKGROUND = "background"
# Words in a file's or folder's name that make it a split (Roboflow names val "valid").
SPLIT_WORDS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
HEAD = 1 << 16  # what is read of a JSON file to tell whether it is COCO's


def coco_files(root: str) -> list[str]:
    """The COCO annotation files of `root`: JSON files in it, in its `annotations/` or in
    its split folders whose first 64 KiB name an "images" list and are not labelme's."""
    root = os.path.expanduser(root)
    found = []
    for pattern in ("*.json", os.path.join("*", "*.json")):
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            with open(path, "rb") as f:
                head = f.read(HEAD)
            if b'"images"' in head and b'"shapes"' not in head:
                found.append(path)
    return found


def split_of(path: str, root: str) -> str | None:
    """The split a COCO file is by the words of its name and its folder's (None: none)."""
    words = set(re.split(r"[^a-z]+", os.path.relpath(path, root).lower()))  # train2017: train
    return next((split for split, names in SPLIT_WORDS.items() if words & set(names)), None)


class CocoFolder(FolderDataset):
    """Segmentation data in COCO annotation files (the layouts above).

    Args:
        root: the export's folder.
        on_bad: as `FolderDataset`.
    """

    LAYOUT = """\
<root>/
  annotations/instances_*.json and images/        CVAT's "COCO 1.0" export
  {train,valid,test}/_annotations.coco.json        Roboflow's "COCO Segmentation" export
  result.json and images/                          Label Studio's "COCO" export
  each file a split by its name or folder (train, val/valid, test); without val, a
  tenth of the images validates"""
    SOURCE = "your own data: an annotation platform's COCO export (polygons or masks)"
    CLASS_FILE = "the COCO files' categories"
    VAL_SOURCE = "a val annotation file"
    MASK_NAMES = "is a COCO export, whose annotation files name their images"

    def __init__(self, root: str, on_bad: str = "raise", mask_suffix: str | None = None):
        self.files = {}  # split (None: the pool) -> its annotation files
        self.objects: dict[str, tuple[int, int, list]] = {}  # label key -> (h, w, objects)
        super().__init__(root, on_bad, mask_suffix)

    def _class_list(self) -> ClassList:
        import imgviz

        categories = {}
        for path in coco_files(self.root):
            with open(path, encoding="utf-8-sig") as f:
                data = json.load(f)
            if not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
                continue
            self.files.setdefault(split_of(path, self.root), []).append((path, data))
            for c in data.get("categories", []):
                if categories.setdefault(c["id"], c["name"]) != c["name"]:
                    self.layout_error(
                        f"{path} names category {c['id']} {c['name']!r}, another file "
                        f"{categories[c['id']]!r}: export every split from one project"
                    )
        if not self.files:
            self.layout_error(f"no COCO annotation file (images, annotations) in {self.root}")
        names = [categories[i] for i in sorted(categories) if categories[i] != BACKGROUND]
        self.class_of = {i: names.index(n) + 1 if n != BACKGROUND else 0
                         for i, n in categories.items()}  # fmt: skip
        palette = imgviz.label_colormap()[1 : len(names) + 2].astype(np.uint8)
        return ClassList((BACKGROUND, *names), palette, False)

    def _has_split(self, split: str) -> bool:
        return split in self.files

    def _split_pairs(self, split: str) -> list[Sample]:
        return self._samples_of(self.files.get(split, []), split)

    def _pool(self) -> tuple[list[Sample], str]:
        files = self.files.get("train") or self.files.get(None, [])
        return self._samples_of(files, "train"), os.path.dirname(files[0][0]) if files else ""

    def _samples_of(self, files: list, split: str) -> list[Sample]:
        """(image, "<file>#<image id>") of every image the files list, the objects of each
        kept for `decode_label`."""
        candidates = []
        for path, data in files:
            by_image = collections.defaultdict(list)
            for a in data["annotations"]:
                by_image[a.get("image_id")].append(a)
            names = [image["file_name"].replace("\\", "/") for image in data["images"]]
            find = _image_finder(path, self.root, names[0]) if names else None
            for image, name in zip(data["images"], names, strict=True):
                key = f"{path}#{image['id']}"
                self.objects[key] = (image["height"], image["width"], by_image[image["id"]])
                candidates.append(Sample(find(name), key))
        return self.existing(candidates, split)

    def existing(self, candidates: list[Sample], split: str) -> list[Sample]:
        """The candidates whose image exists; the others are named (or counted)."""
        present = {s.image: os.path.isfile(s.image) for s in candidates}
        self.report_bad(
            [f"{s.label}: no image {s.image}" for s in candidates if not present[s.image]], split
        )
        return [s for s in candidates if present[s.image]]

    def decode_label(self, path):
        label = tf.numpy_function(lambda p: self.draw(p.decode()), [path], tf.uint8)
        return tf.reshape(label, tf.shape(label)[:2])

    def draw(self, key: str) -> np.ndarray:
        """The label map of one image: its objects decoded by pycocotools, in order."""
        from pycocotools import mask as coco_mask

        height, width, objects = self.objects[key]
        label = np.zeros((height, width), np.uint8)
        for a in objects:
            segmentation = a["segmentation"]
            if isinstance(segmentation, list):  # polygons
                rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation["counts"], list):  # uncompressed run lengths
                rle = coco_mask.frPyObjects(segmentation, height, width)
            else:  # compressed run lengths
                rle = segmentation
            label[coco_mask.decode(rle).astype(bool)] = self.class_of[a["category_id"]]
        return label

    def verify(self, samples):
        """Each image's size against the file's, and its objects' categories and shapes."""
        return self.verify_each(samples, self._check)

    def _check(self, s: Sample) -> str | None:
        height, width, objects = self.objects[s.label]
        problem = size_problem(s, width, height)
        if problem:
            return problem
        for a in objects:
            if a.get("category_id") not in self.class_of:
                return (
                    f"{s.label}: object {a.get('id')} has category {a.get('category_id')}, "
                    "which the file's categories do not list"
                )
            segmentation = a.get("segmentation")
            polygons = (
                isinstance(segmentation, list)
                and segmentation
                and all(
                    isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation
                )
            )
            runs = isinstance(segmentation, dict) and "counts" in segmentation
            if not polygons and not runs:
                return (
                    f"{s.label}: object {a.get('id')} has no segmentation (polygons of three "
                    "or more points, or run lengths); a box alone does not segment"
                )
            if runs and list(segmentation.get("size", ())) != [height, width]:
                return (
                    f"{s.label}: object {a.get('id')}'s run lengths are of a "
                    f"{segmentation.get('size')} image, the file's is [{height}, {width}]"
                )
        return None


def _image_finder(path: str, root: str, first: str):
    """name -> image path for the image names of the annotation file `path`, by where its
    `first` image is: in the file's folder, its `images/`, the root, the root's `images/`
    or another folder of the root (COCO's train2017/), by its name as written or, as
    platforms write server paths (Label Studio's /data/upload/1/NAME), by its file name;
    else every name is taken as relative to the file's folder (and named as missing)."""
    here = os.path.dirname(path)
    bases = [here, os.path.join(here, "images"), root, os.path.join(root, "images")]
    bases += sorted(p for p in glob.glob(os.path.join(root, "*")) if os.path.isdir(p))
    for part in (lambda name: name, os.path.basename):
        for base in bases:
            if os.path.isfile(os.path.join(base, part(first))):
                return lambda name, base=base, part=part: os.path.normpath(
                    os.path.join(base, part(name))
                )
    return lambda name: os.path.normpath(os.path.join(here, name))
