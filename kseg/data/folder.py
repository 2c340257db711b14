"""Your own segmentation data: a folder of images, a folder of masks and a class list.

    DIR/classes.txt                   one class a line: `name` or `name R G B`
    DIR/images/{train,val}/NAME.jpg   (or .png, .jpeg, .bmp, .tif, .webp, .heic)
    DIR/masks/{train,val}/NAME.png    pixel value = class index, 255 = ignore

Without `images/val`, a tenth of the training images is held out for validation (at least
one), and so is it when `images/` and `masks/` hold the files directly, without split
folders: the images whose names hash lowest (`held_out`), the same ones on every run over
the same files, and no image trains that validates.

Masks are single-channel PNGs (1-bit ones read as 0 and 255); palette ("P" mode) PNGs
are read as their indices, as VOC stores them; colour (RGB) PNGs, as some labelling
tools export them, are read by the colours of `classes.txt`, which then gives every
class its colour. When every class's colour there is a grey (R = G = B), single-channel
and palette masks are read by their grey levels too: black-and-white masks, whose 255
marks the object, with `background 0 0 0` and `object 255 255 255`. (As indices, 255
would be "ignore", and a split whose masks mark nothing but class 0 and 255 is refused
for that reason.) GIF, BMP and TIFF masks read as PNGs do; JPEG masks, whose compression
blurs every edge, only by the colours of `classes.txt`, each pixel as the class of the
nearest colour.

Images and masks pair by file name (subfolders allowed): NAME.jpg with NAME.png, or with
the one ending that pairs the most images (NAME_mask.gif), or the `mask_suffix` given.
Every pair is checked before training: an image without a mask, a size mismatch, a mask
value at or above the number of classes (other than 255) or a colour classes.txt does
not list names the file. With `on_bad="skip"` (`--skip-bad-files`) such files are left
out and counted instead.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from kseg.data.base import IGNORE_LABEL, Sample, SegmentationDataset, _check_pair, list_files
from kseg.data.errors import CorruptFileError
from kseg.errors import UserError
from kseg.predict.standalone import IMAGE_EXTENSIONS  # what kseg reads, to train or predict

# What masks may be stored as: PNG, and the other formats datasets ship masks in (GIF:
# Carvana, DRIVE; JPEG: Kvasir-SEG, read by the nearest class colour).
MASK_EXTENSIONS = (".png", ".gif", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
JPEG_MASKS = (
    "JPEG's compression changes the values near every edge, so they are not class "
    "indices. Give every class its colour in classes.txt (`name R G B`; black-and-"
    "white masks: `background 0 0 0` and `object 255 255 255`) to read each pixel as the "
    "class of the nearest colour, or save the masks as PNG"
)
# The share of the training images held out for validation when there is no `images/val`.
HOLD_OUT = 0.1


class ClassList(NamedTuple):
    """A class list (`classes.txt`, or a labelling tool's `labelmap.txt`): the class
    names, their colours (uint8[K, 3]; imgviz's label colours for classes without one),
    and whether the file gives every class its colour (what reading colour masks needs)."""

    names: tuple[str, ...]
    palette: np.ndarray
    coloured: bool


# A class list's line that names no class: labelme's labels.txt starts with it.
IGNORE_LINE = "__ignore__"


def read_classes(path: str) -> ClassList:
    """The `ClassList` of a `classes.txt` (`name` or `name R G B` lines; labelme's
    `labels.txt`, whose `__ignore__` line names no class, reads as one)."""
    names, colours = [], []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            parts = line.split()
            if not parts or parts[0].startswith("#") or parts == [IGNORE_LINE]:
                continue
            colour = rgb(parts[1:]) if len(parts) == 4 else None
            if len(parts) not in (1, 4) or (len(parts) == 4 and colour is None):
                problem = (
                    f"{path} line {number}: expected `name` or `name R G B` (0-255; names "
                    "without spaces, e.g. traffic_light)"
                )
                raise CorruptFileError(
                    "classes.txt", [f"{problem}, got {line.strip()!r}"], skippable=False
                )
            names.append(parts[0])
            colours.append(colour)
    import imgviz

    default = imgviz.label_colormap()[1:]  # 255 colours; 0 (black) left for unlabelled
    palette = np.array(
        [c if c is not None else default[i] for i, c in enumerate(colours)], np.uint8
    ).reshape(-1, 3)
    coloured = all(c is not None for c in colours)
    return ClassList(tuple(names), palette, coloured)


def read_class_list(path: str) -> ClassList:
    """The `ClassList` of a classes.txt, or of a labelling tool's labelmap.txt (its lines
    `name:R,G,B:parts:actions`, `kseg.data.voc_export.read_labelmap`)."""
    with open(path, encoding="utf-8-sig") as f:
        labelmap = any(":" in line for line in f if not line.lstrip().startswith("#"))
    if labelmap:
        from kseg.data.voc_export import read_labelmap

        return read_labelmap(path)
    return read_classes(path)


def rgb(values: Sequence[str]) -> list[int] | None:
    """Three colour values written in a class list, or None unless each is 0 to 255."""
    try:
        colour = [int(v) for v in values]
    except ValueError:
        return None
    return colour if len(colour) == 3 and all(0 <= v <= 255 for v in colour) else None


def read_mask(path, colours: np.ndarray | None = None) -> np.ndarray:
    """A mask as class indices, uint8 H x W: a single-channel mask's values, a palette
    mask's indices, or a colour mask's colours looked up in `colours` (uint8[K, 3], the
    classes' colours; None when classes.txt does not give them). When every colour is a
    grey, single-channel and palette masks are read by their grey levels too. A JPEG
    mask, whose compression changes the values near every edge, is read by the nearest
    of `colours`. Turned by its EXIF orientation if it has one, as its image is
    (`kseg.data.images`). A mask kseg cannot read is a ValueError saying why."""
    with Image.open(path) as im:
        if im.mode not in ("1", "L", "P", "I;16", "I", "RGB", "RGBA"):
            raise ValueError(f"mode {im.mode}: masks are single-channel, palette or RGB images")
        mode, lossy = im.mode, im.format == "JPEG"
        upright = ImageOps.exif_transpose(im)
        greys = colours is not None and bool((colours == colours[:, :1]).all())
        if mode == "1":  # black and white: 0 and 255, as PIL converts it
            upright = upright.convert("L")
        elif mode == "P" and greys:  # a black-and-white GIF or palette PNG
            upright, mode = upright.convert("RGB"), "RGB"
        pixels = np.asarray(upright)
    if lossy:
        return _nearest_indices(pixels, colours, greys)
    if mode in ("RGB", "RGBA"):
        return _colour_indices(pixels[..., :3], colours)
    if pixels.max(initial=0) > 255:
        raise ValueError(f"has value {pixels.max()}: mask values are class indices up to 255")
    if mode != "P" and greys:
        return _colour_indices(np.repeat(pixels[..., None], 3, axis=-1), colours)
    return pixels.astype(np.uint8)


def _colour_indices(rgb: np.ndarray, colours: np.ndarray | None) -> np.ndarray:
    """Class indices of a colour mask: each pixel's colour's index in `colours`."""
    if colours is None:
        raise ValueError(
            "a colour (RGB) mask: give every class its colour in classes.txt (`name R G B`) "
            "to read colour masks, or save masks as class indices"
        )
    codes = _codes(colours)
    unique_codes, first, counts = np.unique(codes, return_index=True, return_counts=True)
    if (counts > 1).any():
        twice = _rgb(unique_codes[counts > 1][0])
        raise ValueError(f"a colour mask, and classes.txt gives two classes the colour {twice}")
    pixels = _codes(rgb)
    at = np.searchsorted(unique_codes, pixels).clip(0, len(unique_codes) - 1)
    known = unique_codes[at] == pixels
    if not known.all():
        unknown = np.unique(pixels[~known])
        listed = ", ".join(_rgb(c) for c in unknown[:5])
        raise ValueError(
            f"has {len(unknown)} colour(s) that classes.txt does not list, e.g. {listed}"
        )
    return first[at].astype(np.uint8)


def _nearest_indices(pixels: np.ndarray, colours: np.ndarray | None, greys: bool) -> np.ndarray:
    """Class indices of a JPEG mask: each pixel's nearest colour in `colours` (a grey
    mask's nearest grey), as thresholding a black-and-white mask at 128 does."""
    if colours is None:
        raise ValueError(f"a JPEG mask: {JPEG_MASKS}")
    palette = colours.astype(np.int32)
    if pixels.ndim == 2:
        if not greys:
            raise ValueError(
                "a greyscale JPEG mask, and classes.txt gives colours that are not greys: "
                "give each class its grey (`name V V V`) or save masks as PNG"
            )
        nearest = np.abs(np.arange(256)[:, None] - palette[None, :, 0]).argmin(axis=1)
        return nearest.astype(np.uint8)[pixels]
    codes, inverse = np.unique(_codes(pixels[..., :3]), return_inverse=True)
    rgb = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1)
    block = max(1, (1 << 22) // len(palette))  # colours at a time: 4M distances, 100 MiB
    nearest = np.concatenate(
        [
            ((rgb[i : i + block, None, :] - palette[None]) ** 2).sum(-1).argmin(axis=1)
            for i in range(0, len(rgb), block)
        ]
    )
    return nearest.astype(np.uint8)[inverse].reshape(pixels.shape[:2])


def held_out(names: Sequence[str], share: float = HOLD_OUT) -> set[str]:
    """The names of a training folder that validate when there is no `images/val`: the
    `share` of them (at least one) whose MD5 hashes are lowest. A name's hash does not
    depend on the other files, so the choice is the same on every run and machine, and
    adding images moves few of the earlier ones."""

    def key(name: str) -> str:
        return hashlib.md5(name.replace(os.sep, "/").encode()).hexdigest()

    count = max(1, round(share * len(names))) if names else 0
    return set(sorted(names, key=key)[:count])


def is_voc_export(root: str) -> bool:
    """Whether `root` is a labelling tool's VOC-style export rather than this layout."""
    root = os.path.expanduser(root)
    return not os.path.isfile(os.path.join(root, "classes.txt")) and os.path.isfile(
        os.path.join(root, "labelmap.txt")
    )


def reader_of(root: str) -> type[FolderDataset]:
    """The reader of a folder of your own data: a labelling tool's VOC-style export
    (labelmap.txt, no classes.txt) `kseg.data.voc_export.VocExport`; with masks/, this
    layout; else labelme's JSON files `kseg.data.labelme.LabelmeFolder`, a COCO export
    `kseg.data.coco.CocoFolder`, and this layout (whose errors then say what is missing)."""
    from kseg.data.coco import CocoFolder, coco_files
    from kseg.data.labelme import LabelmeFolder, is_labelme_folder
    from kseg.data.voc_export import VocExport

    root = os.path.expanduser(root)
    if is_voc_export(root):
        return VocExport
    if os.path.isdir(os.path.join(root, "masks")):
        return FolderDataset
    if is_labelme_folder(root):
        return LabelmeFolder
    return CocoFolder if coco_files(root) else FolderDataset


def _mask_suffix(names: Sequence[str], masks: Sequence[str]) -> str:
    """The ending that pairs the most image `names` (without extension) with `masks`
    (file names), ".png" on a tie or when none pairs: "_mask.gif" for a.jpg and a_mask.gif.
    An ending starts with a character other than a letter or digit ("." "_" "-"), so
    `img10.png` is not an ending of `img1`."""
    masks = sorted(masks)
    counts = collections.Counter()
    for name in names:
        at = bisect.bisect_left(masks, name)
        while at < len(masks) and masks[at].startswith(name):
            ending = masks[at][len(name) :]
            if ending and not ending[0].isalnum():
                counts[ending] += 1
            at += 1
    if not counts:
        return ".png"
    return max(counts, key=lambda ending: (counts[ending], ending == ".png", -len(ending)))


def _folded(name: str) -> str:
    """`name` with its extension in lower case: "a/B.png" for "a/B.PNG", ".png" for
    ".PNG" (a mask suffix)."""
    root, dot, extension = name.rpartition(".")
    return root + dot + extension.lower()


def _codes(rgb: np.ndarray) -> np.ndarray:
    """One int per colour of an (..., 3) uint8 array: R * 65536 + G * 256 + B."""
    return rgb.astype(np.int64) @ [65536, 256, 1]


def _rgb(code: int) -> str:
    return f"({code >> 16} {(code >> 8) & 255} {code & 255})"


class FolderDataset(SegmentationDataset):
    """Segmentation data in the folder layout above (your own photos and masks).

    Args:
        root: the folder holding `classes.txt`, `images/` and `masks/`.
        on_bad: "raise" stops at the first check that fails, naming the files; "skip"
            leaves bad files out and counts them.
        mask_suffix: what follows an image's name (without its extension) in its mask's
            file name, as mmsegmentation's `seg_map_suffix`: ".png" for
            `images/a.jpg` -> `masks/a.png`, "_mask.gif" for Carvana's, "_segmentation.png"
            for ISIC's. None: the ending that pairs the most images, ".png" on a tie.
    """

    name = "custom"
    splits = ("train", "val", "test")
    LAYOUT = """\
<root>/
  classes.txt                   one class a line: name, or name R G B
  images/{train,val}/NAME.jpg   (.jpg, .jpeg, .png, .bmp, .tif, .webp or .heic)
  masks/{train,val}/NAME.png    pixel value = class index (0..K-1), 255 = ignore
                                (or colour PNGs, every class's colour in classes.txt;
                                black-and-white masks: `name 0 0 0`, `name 255 255 255`;
                                NAME_mask.gif and other endings: --mask-suffix)
  without images/val (or without split folders: images/NAME.jpg, masks/NAME.png),
  a tenth of the training images validates
or a labelling tool's Pascal VOC export as it is unzipped (CVAT's "Segmentation mask 1.1"
with images): labelmap.txt, JPEGImages/, SegmentationClass/, ImageSets/Segmentation/
or a folder of labelme's JSON files beside their images, and classes.txt
or an annotation platform's COCO export: annotations/instances_*.json (CVAT),
{train,valid}/_annotations.coco.json (Roboflow), result.json (Label Studio)"""
    SOURCE = "your own data: write masks with any labelling tool that exports PNG masks"

    # The class list, and where validation images come from (messages name them).
    CLASS_FILE = "classes.txt"
    CLASS_LINE = "{name} {grey} {grey} {grey}"  # a class with a grey colour
    VAL_SOURCE = "images/val"
    OPTIONS = ("mask_suffix",)
    # How a layout that names its own masks names them (then `mask_suffix` is refused).
    MASK_NAMES: str | None = None

    def __new__(cls, root: str, on_bad: str = "raise", mask_suffix: str | None = None):
        """`FolderDataset(root)` is the reader of the layout `root` holds (`reader_of`)."""
        return super().__new__(reader_of(root) if cls is FolderDataset else cls)

    def __init__(self, root: str, on_bad: str = "raise", mask_suffix: str | None = None):
        super().__init__(root, on_bad)
        if mask_suffix is not None and self.MASK_NAMES:
            raise UserError(f"{root} {self.MASK_NAMES}: leave out the mask suffix (--mask-suffix)")
        if mask_suffix is not None and not mask_suffix.lower().endswith(MASK_EXTENSIONS):
            raise UserError(
                f"mask suffix {mask_suffix!r}: give the whole ending of the mask files' "
                f"names, with its extension ({', '.join(MASK_EXTENSIONS)}), e.g. _mask.png"
            )
        self.class_names, self.palette, coloured = self._class_list()
        # What colour masks are read by: the classes' colours, when the class list gives them.
        self.mask_colours = self.palette if coloured else None
        classes = os.path.join(self.root, self.CLASS_FILE)
        if not self.class_names:
            self.layout_error(f"{classes} lists no class")
        if len(self.class_names) > IGNORE_LABEL:
            self.layout_error(f"{classes} lists {len(self.class_names)} classes; at most 255")
        self.name = os.path.basename(self.root.rstrip(os.sep)) or "custom"
        self.mask_suffix = mask_suffix  # None until the first split's files decide it
        self._held_out: dict[str, list[Sample]] | None = None  # without a val split

    def decode_label(self, path):
        """Masks go through PIL (TensorFlow's PNG decoder turns palettes into colours)."""
        label = tf.numpy_function(
            lambda p: read_mask(p.decode(), self.mask_colours), [path], tf.uint8
        )
        return tf.reshape(label, tf.shape(label)[:2])

    def _samples(self, split):
        if split == "test" or self._has_split("val"):
            return self._split_pairs(split)
        if self._held_out is None:
            self._held_out = self._hold_out()
        return self._held_out[split]

    def _hold_out(self) -> dict[str, list[Sample]]:
        """The train and val samples without a val split: a tenth of the pool validates."""
        pool, source = self._pool()
        if len(pool) == 1:
            self.layout_error(
                f"{source} holds one image and there is no {self.VAL_SOURCE}: add images, or "
                "the validation images"
            )
        image_dir = os.path.join(self.root, source)
        relative = [os.path.relpath(s.image, image_dir) for s in pool]
        names = held_out(relative)
        split = {"train": [], "val": []}
        for sample, name in zip(pool, relative, strict=True):
            split["val" if name in names else "train"].append(sample)
        if names:
            print(
                f"{self.name}: no {self.VAL_SOURCE}; validating on {len(names)} of the "
                f"{len(pool)} images of {os.path.normpath(image_dir)}, held out from training "
                f"(the tenth whose names hash lowest; to choose them, add {self.VAL_SOURCE})"
            )
        return split

    # === The layout: classes.txt, images/ and masks/ (`VocExport` has its own) ===
    def _class_list(self) -> ClassList:
        classes = os.path.join(self.root, self.CLASS_FILE)
        if not os.path.isfile(classes):
            self.layout_error(f"missing {classes}")
        return read_classes(classes)

    def _has_split(self, split: str) -> bool:
        return os.path.isdir(os.path.join(self.root, "images", split))

    def _split_pairs(self, split: str) -> list[Sample]:
        return self._pairs(split)

    def _pool(self) -> tuple[list[Sample], str]:
        """The samples a val split is held out from, and their folder under the root:
        `images/train`, or `images/` without split folders."""
        folder = "train" if self._has_split("train") else ""
        if not folder and self._has_split("test"):
            self.layout_error(
                "images/test without images/train: put the training images in "
                "images/train (and validation images in images/val)"
            )
        return self._pairs(folder), os.path.join("images", folder)

    def _pairs(self, split: str) -> list[Sample]:
        """The (image, mask) pairs of `images/<split>` (`split` "": of `images/`)."""
        image_dir, mask_dir = self.require_dir("images", split), self.require_dir("masks", split)
        images = [p for p in list_files(image_dir, "**/*") if p.lower().endswith(IMAGE_EXTENSIONS)]
        names = [os.path.splitext(os.path.relpath(p, image_dir))[0] for p in images]
        # by name with the extension in lower case, as images' extensions are matched:
        # cameras and Windows tools write NAME.PNG as often as NAME.png
        by_folded = {
            _folded(path): path
            for p in list_files(mask_dir, "**/*")
            if (path := os.path.relpath(p, mask_dir)).lower().endswith(MASK_EXTENSIONS)
        }
        if self.mask_suffix is None:
            self.mask_suffix = _mask_suffix(names, list(by_folded))
            if self.mask_suffix != ".png":
                print(
                    f"{self.name}: masks pair with images by the ending {self.mask_suffix!r} "
                    f"({os.path.join('images', split, names[0])}.* -> "
                    f"{os.path.join('masks', split, names[0] + self.mask_suffix)}), found "
                    "from the files; --mask-suffix sets it"
                )
        suffix = _folded(self.mask_suffix)
        if images and by_folded and not by_folded.keys() & {n + suffix for n in names}:
            example = next(iter(by_folded.values()))
            self.layout_error(
                f"none of the {len(images)} images in {image_dir} has its mask: an image "
                f"NAME.jpg pairs with the mask NAME{self.mask_suffix} in {mask_dir}, which "
                f"holds e.g. {example} (for other endings, e.g. NAME_mask.png, give "
                "--mask-suffix _mask.png)"
            )
        return self.existing(
            [
                Sample(image, os.path.join(mask_dir, by_folded.get(name + suffix, name + suffix)))
                for image, name in zip(images, names, strict=True)
            ],
            split,
        )

    def existing(self, candidates: list[Sample], split: str) -> list[Sample]:
        """The candidates whose image and mask both exist; the others are named (or, with
        `on_bad="skip"`, counted)."""
        samples, problems = [], []
        for s in candidates:
            if not os.path.isfile(s.image):
                problems.append(f"{s.label}: no image {s.image}")
            elif not os.path.isfile(s.label):
                problems.append(f"{s.image}: no mask {s.label}")
            else:
                samples.append(s)
        self.report_bad(problems, split)
        return samples

    def verify(self, samples: Sequence[Sample]) -> list[Sample]:
        """Readability and sizes (as every dataset), then each mask's values, then that
        the masks mark more than class 0 and "ignore"."""
        jpeg = [s.label for s in samples if s.label.lower().endswith((".jpg", ".jpeg"))]
        if jpeg and self.mask_colours is None:
            raise UserError(
                f"{self.name}: {len(jpeg)} mask(s) are JPEG files, e.g. {jpeg[0]}. {JPEG_MASKS}."
            )
        seen = set()  # the values of every mask
        good = self.verify_each(
            samples, lambda s: _check_pair(s) or self._check_values(s.label, seen)
        )
        if good and seen == {0, IGNORE_LABEL} and self.num_classes > 1:
            self._refuse_black_and_white(os.path.commonpath([s.label for s in good]))
        return good

    def _check_values(self, path: str, seen: set[int]) -> str | None:
        try:
            values = np.unique(read_mask(path, self.mask_colours))
        except ValueError as e:
            return f"{path}: {e}"
        bad = [int(v) for v in values if self.num_classes <= v < IGNORE_LABEL]
        if bad:
            return (
                f"{path} has value(s) {bad[:5]} at or above the {self.num_classes} classes of "
                f"{self.CLASS_FILE} (255 is the only other value allowed)"
            )
        seen.update(int(v) for v in values)
        return None

    def _refuse_black_and_white(self, folder: str):
        """Masks of only 0 and 255 read as indices: nothing but class 0 would train."""
        names = self.class_names
        marked = repr(names[1]) if len(names) == 2 else "a class"
        lines = [
            self.CLASS_LINE.format(name=n, grey=v) for n, v in ((names[0], 0), (names[1], 255))
        ]
        raise UserError(
            f"{self.name}: the masks in {folder} hold only the values 0 and 255, so as class "
            f"indices they mark nothing but {names[0]!r} (255 means 'ignore'). If 255 marks "
            f"{marked} (black-and-white masks), give every class a grey colour in "
            f"{self.CLASS_FILE}, which then reads masks by grey level: `{lines[0]}` and "
            f"`{lines[1]}`."
        )
