"""Calibration and parity data for export: a dataset's images and labels, read through a
recipe's tf.data pipeline, or a folder of unlabelled photos, read as deployment reads
them."""

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


def photo_data(
    folder: str, calib: int, held_out: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(calibration images, held-out images) of a folder of unlabelled photos (searched
    recursively, sorted by path): the first `calib` photos and up to `held_out` after them,
    each resized to height x width in [0, 1] as `kseg.predict` and segment.py feed a
    fixed-size model. A folder of fewer than two photos is a `UserError`."""
    from kseg.errors import UserError
    from kseg.predict.inputs import expand_inputs
    from kseg.predict.standalone import UsageError, read_image, resize_bilinear

    photos, _ = expand_inputs([folder])
    if len(photos) < 2:
        raise UserError(
            f"{folder} holds {len(photos)} photo(s): calibration needs some and the check "
            "at least one held out"
        )
    calib = min(calib, len(photos) - 1)  # at least one photo held out

    def read(paths):
        try:
            images = [read_image(p) for p in paths]
        except UsageError as e:
            raise UserError(str(e)) from None
        return np.stack([resize_bilinear(i / np.float32(255), height, width) for i in images])

    return read(photos[:calib]), read(photos[calib : calib + held_out])
