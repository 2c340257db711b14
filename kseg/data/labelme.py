"""Your own data as labelme saves it: a folder of images, each with the JSON file of its
shapes, read as it is (no conversion to masks first).

    DIR/classes.txt           one class a line, the background first: `name` or
                              `name R G B` (or labelme's labels.txt: `__ignore__`,
                              `_background_`, then the classes)
    DIR/{train,val}/NAME.json labelme's annotation of NAME.jpg (its imagePath); without
                              train/ and val/, the JSON files anywhere below DIR, a tenth
                              of them held out for validation

A file whose image is not beside it, as labelme's `imagePath` names it, is read from the
copy labelme embeds in it (`imageData`, which it stores unless told not to), written once
to `embedded_images_dir()`.

Each file's shapes are drawn in order onto the background (class 0), a later shape over an
earlier one, as labelme's own export (`labelme_export_json`, labelme2voc) draws them:
polygons, rectangles, circles, oriented rectangles, its AI tools' masks, and lines and
points `LINE_WIDTH` and `POINT_SIZE` pixels wide. A shape labelled `__ignore__` marks
pixels that do not count (255). Coordinates are those of the image as labelme shows it,
turned by its EXIF orientation, which is how kseg reads the image (`kseg.data.images`).
"""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import itertools
import json
import math
import os
from pathlib import PureWindowsPath

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from kseg.data.base import IGNORE_LABEL, Sample, size_problem, stem
from kseg.data.folder import IGNORE_LINE, ClassList, FolderDataset, read_classes
from kseg.utils.cache import kseg_cache

# labelme's widths of the shapes that have no area (its `shape_to_mask` defaults).
LINE_WIDTH = 10
POINT_SIZE = 5
IGNORE = IGNORE_LINE  # labelme's label of pixels that do not count
# Shape type: how many points it takes (None: three or more), as labelme checks them.
SHAPES = {
    "polygon": None,
    "rectangle": 2,
    "circle": 2,
    "line": 2,
    "linestrip": None,
    "point": 1,
    "oriented_rectangle": 4,
    "mask": 2,
}


# The endings under which embedded images are written, by Pillow's name of their format.
EMBEDDED_ENDINGS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


def embedded_images_dir() -> str:
    """Where the images that labelme files embed are written to be read: `kseg/labelme`
    in the Keras cache (`kseg.utils.cache.kseg_cache`)."""
    return kseg_cache("labelme")


def embedded_image(json_path: str, data: str) -> str | None:
    """The file of the image a labelme file embeds (`data`, its base64 `imageData`): written
    once to `embedded_images_dir()`, in a folder named by the image's hash, under the JSON
    file's name. None when `data` is not an image."""
    try:
        raw = base64.b64decode(data, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            ending = EMBEDDED_ENDINGS.get(im.format or "")
    except (ValueError, OSError):  # not base64 (binascii.Error), or not an image
        return None
    if ending is None:
        return None
    folder = os.path.join(embedded_images_dir(), hashlib.sha256(raw).hexdigest()[:20])
    path = os.path.join(folder, stem(json_path) + ending)
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        partial = f"{path}.{os.getpid()}.partial"  # another process may write it too
        with open(partial, "wb") as f:
            f.write(raw)
        os.replace(partial, path)
    return path


def is_labelme_folder(root: str) -> bool:
    """Whether `root` holds labelme JSON files rather than `images/` and `masks/`."""
    root = os.path.expanduser(root)
    if os.path.isdir(os.path.join(root, "masks")):
        return False
    first = next(glob.iglob(os.path.join(root, "**", "*.json"), recursive=True), None)
    if first is None:
        return False
    with open(first, "rb") as f:
        return b'"shapes"' in f.read(1 << 16)  # near the start of labelme's files


def _read_json(path: str, default=None):
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return default


def draw_shapes(annotation: dict, values: dict[str, int]) -> np.ndarray:
    """The label map (uint8 H x W) of a labelme annotation: its shapes drawn in order,
    each with its label's value in `values`, over 0."""
    height, width = annotation["imageHeight"], annotation["imageWidth"]
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for shape in annotation["shapes"]:
        value = values[shape["label"]]
        kind = shape.get("shape_type") or "polygon"
        xy = [(float(x), float(y)) for x, y in shape["points"]]
        if kind in ("polygon", "oriented_rectangle"):
            draw.polygon(xy, outline=value, fill=value)
        elif kind == "rectangle":
            (x0, y0), (x1, y1) = xy
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            draw.rectangle(box, outline=value, fill=value)
        elif kind in ("circle", "point"):
            (cx, cy), rest = xy[0], xy[1:]
            r = math.dist(xy[0], rest[0]) if kind == "circle" else POINT_SIZE
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=value, fill=value)
        elif kind in ("line", "linestrip"):
            draw.line(xy, fill=value, width=LINE_WIDTH)
        else:  # "mask": a PNG of the box between its two points
            with Image.open(io.BytesIO(base64.b64decode(shape["mask"]))) as im:
                inside = Image.fromarray(np.asarray(im).astype(bool).astype(np.uint8) * 255)
            canvas.paste(value, (int(xy[0][0]), int(xy[0][1])), inside)
    return np.asarray(canvas)


class LabelmeFolder(FolderDataset):
    """Segmentation data in labelme's JSON files (the layout above).

    Args:
        root: the folder of the JSON files and `classes.txt` (or labelme's `labels.txt`).
        on_bad: as `FolderDataset`.
    """

    LAYOUT = """\
<root>/
  classes.txt               one class a line, the background first: name, or name R G B
                            (or labelme's labels.txt: __ignore__, _background_, classes)
  {train,val}/NAME.json     labelme's file of each image, beside the image it names
  without train/ and val/, every JSON file below <root>, a tenth of them validating"""
    SOURCE = "your own data: images annotated with labelme (polygons, rectangles, masks)"
    CLASS_FILE = "classes.txt"
    VAL_SOURCE = "val/"
    MASK_NAMES = "holds labelme JSON files, which name their images"

    def __init__(self, root: str, on_bad: str = "raise", mask_suffix: str | None = None):
        super().__init__(root, on_bad, mask_suffix)
        self.values = {name: i for i, name in enumerate(self.class_names)}
        self.values[IGNORE] = IGNORE_LABEL

    def _class_list(self) -> ClassList:
        for name in (self.CLASS_FILE, "labels.txt"):
            path = os.path.join(self.root, name)
            if os.path.isfile(path):
                self.CLASS_FILE = name
                return read_classes(path)
        found = sorted(
            {
                shape.get("label", "")
                for path in itertools.islice(self._json_files(self.root), 1000)
                for shape in _read_json(path, {}).get("shapes", [])
            }
            - {IGNORE}
        )
        self.layout_error(
            f"no {os.path.join(self.root, self.CLASS_FILE)}: list the classes in it, one a "
            f"line, the background (what no shape covers) first, e.g. background, "
            f"{', '.join(found[:10])}: the labels of the shapes found"
        )

    @staticmethod
    def _json_files(folder: str) -> list[str]:
        return sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True))

    def _has_split(self, split: str) -> bool:
        return os.path.isdir(os.path.join(self.root, split))

    def _split_pairs(self, split: str) -> list[Sample]:
        return self._annotated(split)

    def _pool(self) -> tuple[list[Sample], str]:
        folder = "train" if self._has_split("train") else ""
        return self._annotated(folder), folder

    def _annotated(self, folder: str) -> list[Sample]:
        """(image, JSON file) of each labelme file below `root/folder`: the image its
        imagePath names, else the one it embeds; a file with neither is named (or, with
        on_bad="skip", counted)."""
        candidates, bad, embedded = [], [], 0
        for path in self._json_files(os.path.join(self.root, folder)):
            annotation = _read_json(path, {})
            image = PureWindowsPath(annotation.get("imagePath") or "").as_posix()
            image = os.path.normpath(os.path.join(os.path.dirname(path), image)) if image else ""
            image = image or os.path.splitext(path)[0] + ".jpg"
            data = annotation.get("imageData")
            if not os.path.isfile(image) and isinstance(data, str) and data:
                copy = embedded_image(path, data)
                if copy is None:
                    bad.append(f"{path}: no image {image}, and its imageData is not an image")
                    continue
                image, embedded = copy, embedded + 1
            candidates.append(Sample(image, path))
        if embedded:
            print(
                f"{self.name}: {embedded} labelme file(s) in {os.path.join(self.root, folder)} "
                f"without their image beside them: read the image each embeds (imageData), "
                f"copied to {embedded_images_dir()}"
            )
        self.report_bad(bad, folder or "train")
        return self.existing(candidates, folder or "train")

    def decode_label(self, path):
        label = tf.numpy_function(
            lambda p: draw_shapes(_read_json(p.decode()), self.values), [path], tf.uint8
        )
        return tf.reshape(label, tf.shape(label)[:2])

    def verify(self, samples):
        """Each file's JSON, shapes and labels, and its image's size against the size the
        file records."""
        return self.verify_each(samples, self._check)

    def _check(self, s: Sample) -> str | None:
        annotation = _read_json(s.label)
        if not isinstance(annotation, dict) or not isinstance(annotation.get("shapes"), list):
            return f"{s.label}: not a labelme JSON file (no list of shapes)"
        problem = size_problem(s, annotation.get("imageWidth"), annotation.get("imageHeight"))
        if problem:
            return problem
        for number, shape in enumerate(annotation["shapes"], start=1):
            label, kind = shape.get("label"), shape.get("shape_type") or "polygon"
            points = shape.get("points") or []
            if label not in self.values:
                return (
                    f"{s.label}: shape {number} is labelled {label!r}, which "
                    f"{self.CLASS_FILE} does not list (add it, or label it {IGNORE})"
                )
            if kind not in SHAPES:
                return f"{s.label}: shape {number} is a {kind!r}; kseg draws {', '.join(SHAPES)}"
            count = SHAPES[kind]
            if (count is None and len(points) < (3 if kind == "polygon" else 2)) or (
                count is not None and len(points) != count
            ):
                return f"{s.label}: shape {number}, a {kind}, has {len(points)} point(s)"
            if not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) for v in p)
                for p in points
            ):
                return f"{s.label}: shape {number}'s points are not [x, y] pairs of numbers"
            if kind == "mask" and not isinstance(shape.get("mask"), str):
                return f"{s.label}: shape {number}, a mask, has no base64 PNG"
        return None
