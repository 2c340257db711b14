"""LIP, Look Into Person (Gong et al. 2017): human parsing, 20 classes."""

from __future__ import annotations

import imgviz

from kseg.data.base import SegmentationDataset, list_files, stem


class LIP(SegmentationDataset):
    """30,462 train and 10,000 val images; 19 part/clothes classes plus background."""

    name = "LIP"
    class_names = (
        "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat",
        "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "left_arm", "right_arm",
        "left_leg", "right_leg", "left_shoe", "right_shoe",
    )  # fmt: skip
    palette = imgviz.label_colormap()[:20]
    expected_counts = {"train": 30462, "val": 10000}
    LAYOUT = """\
<root>/
  TrainVal_images/train_images/<id>.jpg
  TrainVal_images/val_images/<id>.jpg
  TrainVal_parsing_annotations/train_segmentations/<id>.png   (values 0-19)
  TrainVal_parsing_annotations/val_segmentations/<id>.png"""
    SOURCE = "the LIP dataset site (sysu-hcp.net/lip), 'Single Person' parsing data"

    def _samples(self, split):
        images = list_files(self.require_dir("TrainVal_images", f"{split}_images"), "*.jpg")
        labels = list_files(
            self.require_dir("TrainVal_parsing_annotations", f"{split}_segmentations"), "*.png"
        )
        return self.pair(images, labels, stem, split)
