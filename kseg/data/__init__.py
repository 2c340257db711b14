"""Datasets in their official layouts and the tf.data pipelines that read them."""

from kseg.data.base import IGNORE_LABEL, Sample, SegmentationDataset
from kseg.data.camvid import CamVid
from kseg.data.cityscapes import Cityscapes
from kseg.data.classification import load_cifar, load_svhn, load_tiny_imagenet
from kseg.data.classification_pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ClassificationAugmentation,
    classification_pipeline,
)
from kseg.data.coco import CocoFolder
from kseg.data.errors import CorruptFileError, DatasetLayoutError
from kseg.data.folder import FolderDataset
from kseg.data.labelme import LabelmeFolder
from kseg.data.lip import LIP
from kseg.data.pascal_context import PascalContext
from kseg.data.pipeline import Augmentation, segmentation_pipeline
from kseg.data.voc import VOC
from kseg.data.voc_export import VocExport

SEGMENTATION_DATASETS: dict[str, type[SegmentationDataset]] = {
    "cityscapes": Cityscapes,
    "camvid": CamVid,
    "voc": VOC,
    "lip": LIP,
    "pascal_context": PascalContext,
    "custom": FolderDataset,
}

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "ClassificationAugmentation",
    "IGNORE_LABEL",
    "SEGMENTATION_DATASETS",
    "Augmentation",
    "CamVid",
    "CocoFolder",
    "Cityscapes",
    "CorruptFileError",
    "DatasetLayoutError",
    "FolderDataset",
    "LIP",
    "LabelmeFolder",
    "PascalContext",
    "Sample",
    "SegmentationDataset",
    "VOC",
    "VocExport",
    "classification_pipeline",
    "load_cifar",
    "load_svhn",
    "load_tiny_imagenet",
    "segmentation_pipeline",
]
