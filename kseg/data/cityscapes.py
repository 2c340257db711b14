"""Cityscapes (Cordts et al. 2016), fine annotations: 19 training classes."""

from __future__ import annotations

import os

import numpy as np
from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS

from kseg.data.base import IGNORE_LABEL, SegmentationDataset, list_files

_TRAIN = sorted(
    (label for label in CITYSCAPES_LABELS if 0 <= label.trainId < IGNORE_LABEL),
    key=lambda label: label.trainId,
)


class Cityscapes(SegmentationDataset):
    """`gtFine` labelIds mapped to the 19 trainIds of the official table
    (`cityscapesscripts.helpers.labels`); every other id is ignored (255). The split
    `train_extra` is the 19,998 coarsely labelled images (`gtCoarse` labelIds, the same
    table)."""

    name = "Cityscapes"
    class_names = tuple(label.name for label in _TRAIN)
    palette = np.array([label.color for label in _TRAIN], np.uint8)
    splits = ("train", "val", "test", "train_extra")
    expected_counts = {"train": 2975, "val": 500, "test": 1525, "train_extra": 19998}
    LAYOUT = """\
<root>/
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
  leftImg8bit/train_extra/<city>/..._leftImg8bit.png    (optional, coarse labels:)
  gtCoarse/train_extra/<city>/<city>_<seq>_<frame>_gtCoarse_labelIds.png"""
    SOURCE = (
        "https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip and "
        "gtFine_trainvaltest.zip, after registering; for train_extra also "
        "leftImg8bit_trainextra.zip and gtCoarse.zip); unzip them into <root>"
    )

    @property
    def label_map(self) -> np.ndarray:
        table = np.full(256, IGNORE_LABEL, np.uint8)
        for label in CITYSCAPES_LABELS:
            if 0 <= label.id < 256:
                table[label.id] = label.trainId if 0 <= label.trainId < 255 else IGNORE_LABEL
        return table

    def _samples(self, split):
        kind = "gtCoarse" if split == "train_extra" else "gtFine"
        images = list_files(self.require_dir("leftImg8bit", split), "*/*_leftImg8bit.png")
        labels = list_files(self.require_dir(kind, split), f"*/*_{kind}_labelIds.png")

        def key(path):
            name = os.path.basename(path)
            return name.rsplit("_", 2 if name.endswith("_labelIds.png") else 1)[0]

        return self.pair(images, labels, key, split)

    @staticmethod
    def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
        """Predictions as official labelIds (for the benchmark server and its scripts)."""
        table = np.zeros(256, np.uint8)
        for label in _TRAIN:
            table[label.trainId] = label.id
        return table[train_ids]
