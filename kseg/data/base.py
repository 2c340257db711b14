"""What every segmentation dataset reader provides: file pairs, classes and label mapping."""

from __future__ import annotations

import dataclasses
import glob
import os
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image

from kseg.data.errors import CorruptFileError, DatasetLayoutError
from kseg.data.images import large_images, oriented_size
from kseg.errors import UnknownNameError, UserError
from kseg.predict.standalone import HEIF_EXTENSIONS, UsageError, heif_opener

IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image and its label image on disk."""

    image: str
    label: str


class SegmentationDataset:
    """A semantic-segmentation dataset in its official on-disk layout.

    Subclasses set the class attributes and implement `_samples(split)`. Labels on disk are
    mapped to training ids 0..num_classes-1 by `label_map` (a 256-entry table), everything
    else to `IGNORE_LABEL` (255).

    Args:
        root: the dataset folder (see each reader's `LAYOUT`).
        on_bad: "raise" stops at unreadable files or image/label size mismatches, naming
            them; "skip" leaves them out with a warning.
    """

    name: str = ""
    class_names: tuple[str, ...] = ()
    palette: np.ndarray = np.zeros((0, 3), np.uint8)  # RGB colour per training id
    # Labels stored as colour PNGs: uint8[K, 3] colours whose row index is the label value
    # (None: labels are stored as values). Decoders map colours back to values.
    label_colors: np.ndarray | None = None
    # The label value on disk of training id 0; the values below it are ignored.
    label_offset: int = 0
    splits: tuple[str, ...] = ("train", "val")
    LAYOUT: str = ""
    SOURCE: str = ""
    expected_counts: dict[str, int] = {}
    # The run settings (`kseg.recipes.config.RunConfig` fields, command-line flags) that the
    # constructor takes besides `root` and `on_bad`.
    OPTIONS: tuple[str, ...] = ()

    def __init__(self, root: str, on_bad: str = "raise"):
        if on_bad not in ("raise", "skip"):
            raise ValueError(f"on_bad must be 'raise' or 'skip', got {on_bad!r}")
        self.root = os.path.abspath(os.path.expanduser(root))
        self.on_bad = on_bad
        self.skipped: dict[str, int] = {}  # bad files left out with on_bad="skip", by split
        if not os.path.isdir(self.root):
            self.layout_error(f"the folder {self.root} does not exist")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_map(self) -> np.ndarray:
        """uint8[256]: label value on disk -> training id or 255. By default the values
        label_offset.. label_offset + num_classes - 1 are the training ids in order."""
        table = np.full(256, IGNORE_LABEL, np.uint8)
        first = self.label_offset
        table[first : first + self.num_classes] = np.arange(self.num_classes)
        return table

    def layout_error(self, problem: str):
        raise DatasetLayoutError(self.name, problem, self.LAYOUT, self.SOURCE)

    def _samples(self, split: str) -> list[Sample]:
        raise NotImplementedError

    def samples(self, split: str, verify: bool = True) -> list[Sample]:
        """The (image, label) files of `split`, sorted, checked unless `verify=False`."""
        if split not in self.splits:
            raise UnknownNameError(f"{self.name} has splits {self.splits}, not {split!r}")
        samples = self._samples(split)
        if not samples:
            self.layout_error(f"no {split} images found under {self.root}")
        expected = self.expected_counts.get(split)
        if expected is not None and len(samples) != expected:
            warnings.warn(
                f"{self.name} {split}: {len(samples)} images, the standard split has "
                f"{expected}; results will not compare with published ones",
                stacklevel=2,
            )
        return self.verify(samples) if verify else samples

    def verify(self, samples: Sequence[Sample]) -> list[Sample]:
        """Reads every file's header and checks image and label sizes agree."""
        return self.verify_each(samples, _check_pair)

    def verify_each(self, samples: Sequence[Sample], check) -> list[Sample]:
        """The samples whose JPEG, BMP, GIF and WebP files TensorFlow decodes whole and
        whose TIFF files hold all their image data (a file cut short passes the checks of
        headers), and that `check` (a sample -> its problem, or None) passes; the others'
        problems go to `report_bad`, all in one report."""
        if any(s.image.lower().endswith(HEIF_EXTENSIONS) for s in samples):
            try:
                heif_opener()  # Pillow reads them through pillow-heif
            except UsageError as e:  # it is not installed
                raise UserError(f"{self.name}: {e}") from None
        cut = self._cut_short([p for s in samples for p in (s.image, s.label)])
        checked = [(s, cut.get(s.image) or cut.get(s.label) or check(s)) for s in samples]
        self.report_bad([problem for _, problem in checked if problem])
        return [s for s, problem in checked if not problem]

    def _cut_short(self, files: list[str]) -> dict[str, str]:
        """{file: its problem} of `files` that do not decode or whose TIFF data is cut
        short (`kseg.data.decode_check`). Each file is checked once in the reader's life: a
        run asks for its splits' samples again (evaluation, export calibration), and
        decoding a split of large photos takes a while."""
        from kseg.data.decode_check import (
            DECODED_SUFFIXES,
            TIFF_SUFFIXES,
            tiff_cut_short,
            undecodable,
        )

        known = self.__dict__.setdefault("_checked_contents", {})  # file -> problem or None
        new = [p for p in dict.fromkeys(files) if p not in known]
        known.update(dict.fromkeys(new))
        known.update(undecodable(p for p in new if p.lower().endswith(DECODED_SUFFIXES)))
        known.update(tiff_cut_short(p for p in new if p.lower().endswith(TIFF_SUFFIXES)))
        return {p: known[p] for p in files if known[p]}

    def report_bad(self, problems: list[str], split: str = "") -> None:
        """Stops at `problems` (bad files, one line each) naming them, or with
        `on_bad="skip"` counts them and warns once."""
        if problems and self.on_bad == "raise":
            raise CorruptFileError(self.name, problems)
        if not problems:
            return
        self.skipped[split] = self.skipped.get(split, 0) + len(problems)
        warnings.warn(
            f"{self.name}: skipped {len(problems)} bad file(s) (--skip-bad-files), e.g. "
            f"{problems[0]}",
            stacklevel=3,
        )

    # Helpers for subclasses.
    def require_dir(self, *parts: str) -> str:
        path = os.path.join(self.root, *parts)
        if not os.path.isdir(path):
            self.layout_error(f"missing folder {path}")
        return path

    def pair(self, images: list[str], labels: list[str], key, split: str) -> list[Sample]:
        """Pairs images with labels by `key(path)`; an image without a label is an error."""
        by_key = {key(p): p for p in labels}
        missing = [p for p in images if key(p) not in by_key]
        if missing:
            self.layout_error(
                f"{len(missing)} of {len(images)} {split} image(s) have no label file, "
                f"e.g. {missing[:3]}"
            )
        return [Sample(p, by_key[key(p)]) for p in sorted(images)]

    def listed_samples(
        self, split: str, folder: str, lists: str, label_folder: str
    ) -> list[Sample]:
        """The samples of a VOC devkit layout: the names listed in
        `<folder>/ImageSets/<lists>/<split>.txt`, their images
        `<folder>/JPEGImages/<name>.jpg` and labels `<folder>/<label_folder>/<name>.png`."""
        names = self.read_list(folder, "ImageSets", lists, f"{split}.txt")
        image_dir = self.require_dir(folder, "JPEGImages")
        label_dir = self.require_dir(folder, label_folder)
        images = self.existing([os.path.join(image_dir, f"{n}.jpg") for n in names], split)
        labels = self.existing([os.path.join(label_dir, f"{n}.png") for n in names], split)
        return self.pair(images, labels, stem, split)

    def read_list(self, *parts: str) -> list[str]:
        """Names listed one per line in a split file (VOC-style ImageSets)."""
        path = os.path.join(self.root, *parts)
        if not os.path.isfile(path):
            self.layout_error(f"missing split list {path}")
        with open(path, encoding="utf-8-sig") as f:
            return [line.split()[0] for line in f if line.strip()]

    def existing(self, paths: list[str], split: str) -> list[str]:
        """`paths` if all exist, else a layout error naming the missing ones."""
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            self.layout_error(
                f"{len(missing)} of {len(paths)} {split} file(s) listed in the split file are "
                f"missing, e.g. {missing[:3]}"
            )
        return paths


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _check_pair(s: Sample) -> str | None:
    sizes = []
    for path in (s.image, s.label):
        try:
            with Image.open(path) as im:
                im.verify()  # PNG: checks the chunk checksums
            with Image.open(path) as im:
                sizes.append(oriented_size(im))
        except Exception as e:  # PIL raises many types for bad files
            return unreadable(path, e)
    if sizes[0] != sizes[1]:
        (iw, ih), (lw, lh) = sizes
        return f"{s.image} is {iw}x{ih} but its label {s.label} is {lw}x{lh}"
    return None


def unreadable(path: str, error: Exception) -> str:
    """Why Pillow did not open `path` for the checks, as a line of their report: an image
    over Pillow's limit (twice `Image.MAX_IMAGE_PIXELS`, against decompression bombs) with
    its size and what to do, other errors as Pillow says them."""
    if isinstance(error, Image.DecompressionBombError):
        with large_images(None), Image.open(path) as im:  # its header only
            shown = f"{im.width}x{im.height}, {im.width * im.height:,} pixels"
        return (
            f"{path}: too large to train on whole ({shown}; Pillow reads up to "
            f"{2 * Image.MAX_IMAGE_PIXELS:,}): cut your data into tiles with "
            "python -m kseg.data.tile"
        )
    return f"{path}: unreadable ({type(error).__name__}: {error})"


def size_problem(s: Sample, width, height) -> str | None:
    """Why the image of `s` is unreadable or not `width` x `height` as shown (the size its
    annotation file `s.label` records), or None."""
    try:
        with Image.open(s.image) as im:
            shown = oriented_size(im)
    except Exception as e:  # PIL raises many types for bad files
        return unreadable(s.image, e)
    if shown != (width, height):
        return f"{s.image} is {shown[0]}x{shown[1]} but {s.label} records {width}x{height}"
    return None


def list_files(folder: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, pattern), recursive=True))
