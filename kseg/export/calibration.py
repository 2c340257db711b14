"""Calibration and parity data for export, read through a recipe's tf.data pipeline."""

from __future__ import annotations

import warnings

import numpy as np


def calibration_data(
    dataset, split: str, count: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of the first `count` images of `split`, cropped to height x width
    without augmentation (padding with the ignore label where an image is smaller), scaled
    as the model sees them in training."""
    from kseg.data import Augmentation, segmentation_pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a partial split is fine for calibration
        samples = dataset.samples(split)[:count]
    ds = segmentation_pipeline(
        dataset, samples, 1, training=True, crop=(height, width),
        augmentation=Augmentation.none(), seed=0,
    )  # fmt: skip
    pairs = [(x.numpy()[0], y.numpy()[0]) for x, y in ds]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
