"""PASCAL VOC 2012 segmentation (Everingham et al.), with SBD's train_aug when present."""

from __future__ import annotations

import imgviz
import numpy as np

from kseg.data.base import SegmentationDataset

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_colormap() -> np.ndarray:
    """uint8[256, 3]: the VOC palette (value i is drawn in colour i; 255 is the border)."""
    return imgviz.label_colormap()


class VOC(SegmentationDataset):
    """21 classes (background included); the 255 object borders are ignored.

    Splits: `train` (1,464) and `val` (1,449) from `SegmentationClass`, and `train_aug`
    (10,582: VOC train plus Hariharan et al.'s SBD, without VOC val) from
    `SegmentationClassAug` when that folder and its list are present. `SegmentationClass`
    PNGs are colour-palette images; their colours are mapped back to class values.
    """

    name = "PASCAL VOC 2012"
    class_names = VOC_CLASSES
    palette = voc_colormap()[:21]
    label_colors = voc_colormap()
    splits = ("train", "val", "train_aug")
    expected_counts = {"train": 1464, "val": 1449, "train_aug": 10582}
    LAYOUT = """\
<root>/                                   (the VOCdevkit folder)
  VOC2012/JPEGImages/<name>.jpg
  VOC2012/SegmentationClass/<name>.png      (colour palette PNGs)
  VOC2012/ImageSets/Segmentation/{train,val}.txt
  VOC2012/SegmentationClassAug/<name>.png   (optional, SBD train_aug, value PNGs)
  VOC2012/ImageSets/Segmentation/train_aug.txt"""
    SOURCE = (
        "VOCtrainval_11-May-2012.tar from the PASCAL VOC site "
        "(host.robots.ox.ac.uk/pascal/VOC/voc2012/); train_aug: SBD "
        "(Hariharan et al. 2011) converted to SegmentationClassAug"
    )

    def _samples(self, split):
        labels = "SegmentationClassAug" if split == "train_aug" else "SegmentationClass"
        return self.listed_samples(split, "VOC2012", "Segmentation", labels)
