"""Class weights from the training labels: median frequency balancing (Eigen & Fergus
2015, "Predicting Depth, Surface Normals and Semantic Labels with a Common Multi-Scale
Convolutional Architecture", arXiv:1411.4734; the weights SegNet trains CamVid with).

For each class c, f_c = (its pixels) / (the pixels of the training images that show it),
and its weight is median(f) / f_c: a class a tenth as frequent as the median class
weighs ten times as much in the cross-entropy. A class no training image shows weighs 1
(it has no pixels to weigh).
"""

from __future__ import annotations

import numpy as np

from kseg.data.base import IGNORE_LABEL


def class_pixels(dataset, samples) -> tuple[np.ndarray, np.ndarray]:
    """(the pixels of each class, the labelled pixels of the images that show it), int64[K]
    each, over the labels of `samples` as the training pipeline reads them (the labels
    only: their images are not decoded)."""
    import tensorflow as tf

    from kseg.data.pipeline import make_label_decoder

    classes = dataset.num_classes
    pixels, shown = np.zeros(classes, np.int64), np.zeros(classes, np.int64)
    labels = tf.data.Dataset.from_tensor_slices([s.label for s in samples]).map(
        make_label_decoder(dataset), num_parallel_calls=tf.data.AUTOTUNE
    )
    for label in labels:
        values = label.numpy().ravel()
        counts = np.bincount(values[values != IGNORE_LABEL], minlength=classes)[:classes]
        pixels += counts
        shown += (counts > 0) * counts.sum()
    return pixels, shown


def median_frequency_weights(pixels: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """float64[K]: median(f) / f_c, f_c = pixels[c] / shown[c]; 1 for a class with no
    pixels."""
    present = pixels > 0
    frequency = np.divide(pixels, shown, out=np.zeros(len(pixels)), where=present)
    weights = np.ones(len(pixels))
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights
