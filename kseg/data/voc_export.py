"""A labelling tool's export in the Pascal VOC segmentation layout, read as your own data:
CVAT's "Segmentation mask" and "PASCAL VOC" exports and Datumaro's `voc_segmentation`.

    DIR/labelmap.txt                        `name:R,G,B:parts:actions`, one class a line
    DIR/JPEGImages/NAME.jpg                 the images (CVAT: export with "Save images")
    DIR/SegmentationClass/NAME.png          masks in labelmap.txt's colours
    DIR/ImageSets/Segmentation/SUBSET.txt   the names of a subset's images, one a line

Classes are labelmap.txt's lines in order (class 0 first, usually `background`); a
labelmap without colours means the Pascal VOC colour map, as the tools write masks then.
Subsets named train, val (or valid, validation) and test are kseg's splits; without a val
subset a tenth of the training images validates (`kseg.data.folder.held_out`), held out
from the train subset, else from every other subset (CVAT's `default`), else from every
mask. `kseg.data.FolderDataset(DIR)` opens such a folder as this reader.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from kseg.data.base import Sample, list_files
from kseg.data.errors import CorruptFileError
from kseg.data.folder import IMAGE_EXTENSIONS, ClassList, FolderDataset, rgb

# Subset list names (case aside) that are kseg's splits.
SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def read_labelmap(path: str) -> ClassList:
    """The `ClassList` of a labelmap.txt (`name:R,G,B:parts:actions` lines, `#` comments)."""
    names, colours = [], []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(":")
            given = len(fields) > 1 and fields[1].strip()
            colour = rgb(fields[1].split(",")) if given else None
            if len(fields) != 4 or (given and colour is None):
                problem = f"{path} line {number}: expected `name:R,G,B:parts:actions` (0-255)"
                raise CorruptFileError(
                    "labelmap.txt", [f"{problem}, got {line!r}"], skippable=False
                )
            names.append(fields[0].strip())
            colours.append(colour)
    if any(c is None for c in colours) and any(c is not None for c in colours):
        missing = [n for n, c in zip(names, colours, strict=True) if c is None]
        raise CorruptFileError(
            "labelmap.txt",
            [f"{path}: classes without a colour, e.g. {missing[:3]}"],
            skippable=False,
        )
    import imgviz

    if all(c is None for c in colours):  # the tools paint masks in VOC's colour map
        colours = imgviz.label_colormap()[: len(names)].tolist()
    return ClassList(tuple(names), np.array(colours, np.uint8).reshape(-1, 3), True)


class VocExport(FolderDataset):
    """Your own data as a labelling tool exports it in the Pascal VOC layout (above).

    Args:
        root: the export's folder (unzipped), holding labelmap.txt.
        on_bad: as `FolderDataset`.
    """

    LAYOUT = """\
<root>/
  labelmap.txt                          name:R,G,B:parts:actions, one class a line
  JPEGImages/NAME.jpg                   (export the images with the annotations)
  SegmentationClass/NAME.png            colour masks in labelmap.txt's colours
  ImageSets/Segmentation/SUBSET.txt     image names; subsets train, val and test (without
                                        val, a tenth of train, or of the other subsets such
                                        as CVAT's default, validates)"""
    SOURCE = (
        "a labelling tool's Pascal VOC segmentation export (CVAT: Export dataset, "
        "format 'Segmentation mask 1.1', with images)"
    )
    CLASS_FILE = "labelmap.txt"
    CLASS_LINE = "{name}:{grey},{grey},{grey}::"
    VAL_SOURCE = "ImageSets/Segmentation/val.txt"
    MASK_NAMES = "is a Pascal VOC export, whose masks are SegmentationClass/NAME.png"

    def _class_list(self) -> ClassList:
        return read_labelmap(os.path.join(self.root, self.CLASS_FILE))

    def _list_file(self, split: str) -> str | None:
        """The subset list that is `split`, if the export has one."""
        for path in glob.glob(os.path.join(self.root, "ImageSets", "Segmentation", "*.txt")):
            if os.path.splitext(os.path.basename(path))[0].lower() in SPLIT_NAMES[split]:
                return path
        return None

    def _has_split(self, split: str) -> bool:
        return self._list_file(split) is not None

    def _split_pairs(self, split: str) -> list[Sample]:
        path = self._list_file(split)
        if path is None:
            self.layout_error(f"no {split} subset in ImageSets/Segmentation")
        return self._named(_read_names(path), split)

    def _pool(self) -> tuple[list[Sample], str]:
        """The train subset; else every subset but val and test; else every mask."""
        lists = sorted(glob.glob(os.path.join(self.root, "ImageSets", "Segmentation", "*.txt")))
        train = self._list_file("train")
        named = {*SPLIT_NAMES["val"], *SPLIT_NAMES["test"]}
        others = [p for p in lists if os.path.splitext(os.path.basename(p))[0].lower() not in named]
        if train or others:
            names = [n for path in ([train] if train else others) for n in _read_names(path)]
        else:
            masks = self.require_dir("SegmentationClass")
            names = [
                os.path.splitext(os.path.relpath(p, masks))[0]
                for p in list_files(masks, "**/*.png")
            ]
        return self._named(list(dict.fromkeys(names)), "train"), "JPEGImages"

    def _named(self, names: list[str], split: str) -> list[Sample]:
        """The samples of image names (without extension): JPEGImages/NAME.* and
        SegmentationClass/NAME.png."""
        images = self.require_dir("JPEGImages")
        masks = os.path.join(self.root, "SegmentationClass")
        by_name = {}  # the folder listed once: NAME -> its image file (any extension)
        for path in reversed(list_files(images, "**/*")):
            if path.lower().endswith(IMAGE_EXTENSIONS):
                by_name[os.path.splitext(os.path.relpath(path, images))[0]] = path
        candidates = [
            Sample(
                by_name.get(os.path.normpath(name), os.path.join(images, name + ".jpg")),
                os.path.join(masks, name + ".png"),
            )
            for name in names
        ]
        return self.existing(candidates, split)


def _read_names(path: str) -> list[str]:
    """The image names of a subset list, one a line."""
    with open(path, encoding="utf-8-sig") as f:
        return [line.strip() for line in f if line.strip()]
