"""PASCAL-Context (Mottaghi et al. 2014), the 59 most frequent classes."""

from __future__ import annotations

import imgviz

from kseg.data.base import SegmentationDataset

CONTEXT59 = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
    "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck",
    "tvmonitor", "wall", "water", "window", "wood",
)  # fmt: skip


class PascalContext(SegmentationDataset):
    """4,996 train and 5,104 val images. Label PNGs hold 0 (the other classes, ignored)
    and 1-59; training ids are 0-58, as in the 59-class protocol."""

    name = "PASCAL-Context"
    class_names = CONTEXT59
    palette = imgviz.label_colormap()[1:60]
    label_offset = 1  # 0 is "other"
    expected_counts = {"train": 4996, "val": 5104}
    LAYOUT = """\
<root>/                                      (the VOCdevkit folder)
  VOC2010/JPEGImages/<name>.jpg
  VOC2010/SegmentationClassContext/<name>.png   (values 0-59, 0 = other)
  VOC2010/ImageSets/SegmentationContext/{train,val}.txt"""
    SOURCE = (
        "VOC2010 trainval from the PASCAL VOC site plus the PASCAL-Context annotations "
        "(cs.stanford.edu/~roozbeh/pascal-context/, trainval_merged.json), converted to "
        "59-class PNGs with the Detail API (as mmsegmentation's pascal_context.py does)"
    )

    def _samples(self, split):
        return self.listed_samples(
            split, "VOC2010", "SegmentationContext", "SegmentationClassContext"
        )
