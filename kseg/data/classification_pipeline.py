"""tf.data pipeline of image classification (CIFAR-style): random crop of the image padded
by 4, colour jitter, horizontal flip and per-channel normalisation, as the official code of
Carrara et al. 2019 trains on CIFAR-10 ("crop+jitter+flip+norm"); with the channel
statistics it normalises by and the held-out validation split."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kseg.data.pipeline import split_seeds

# torchvision's CIFAR-10 statistics as the official code normalises with them.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


@dataclasses.dataclass(frozen=True)
class ClassificationAugmentation:
    """RandomCrop(padding=4), ColorJitter(hue=0.05, saturation=0.05), RandomHorizontalFlip
    of the official code (utils.py); `none()` turns everything off."""

    pad: int = 4
    hue: float = 0.05  # max delta, fraction of the hue circle
    saturation: float = 0.05  # factor in [1 - s, 1 + s]
    flip: bool = True

    @classmethod
    def none(cls) -> ClassificationAugmentation:
        return cls(pad=0, hue=0.0, saturation=0.0, flip=False)


# By name, as training presets give them: the ODE nets' official augmentation, the
# "standard" CIFAR augmentation of ResNet, DenseNet and ChoiceNet (random crop of the
# image padded by 4, horizontal flip), and none (SVHN).
AUGMENTATIONS = {
    "crop_jitter_flip": ClassificationAugmentation(),
    "crop_flip": ClassificationAugmentation(hue=0.0, saturation=0.0),
    "none": ClassificationAugmentation.none(),
}


def normalize(images, mean, std):
    """uint8 (or [0, 255] float) images to float32 (x / 255 - mean) / std."""
    x = tf.cast(images, tf.float32) / 255.0
    return (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def normalize_numpy(images: np.ndarray, mean, std) -> np.ndarray:
    """The same as `normalize`, for arrays."""
    return ((images.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)).astype(
        np.float32
    )


def channel_statistics(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units."""
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for i in range(0, len(images), 4096):  # float64 in chunks: SVHN+extra is 600k images
        x = images[i : i + 4096].astype(np.float64) / 255.0
        total += x.sum(axis=(0, 1, 2))
        squares += (x**2).sum(axis=(0, 1, 2))
    n = len(images) * images.shape[1] * images.shape[2]
    mean = total / n
    std = np.sqrt(squares / n - mean**2)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def split_holdout(images, labels, holdout: int | float, seed: int = 0):
    """(train, validation): `holdout` images (a count, or a fraction of the set) drawn at
    random with a fixed seed, so that a resumed run validates on the same images."""
    n = int(round(holdout * len(images))) if isinstance(holdout, float) else int(holdout)
    if not 0 < n < len(images):
        raise ValueError(f"cannot hold out {holdout} of {len(images)} training images")
    order = np.random.default_rng(seed).permutation(len(images))
    val, keep = np.sort(order[:n]), np.sort(order[n:])
    return (images[keep], labels[keep]), (images[val], labels[val])


def _augment(image, seed, aug: ClassificationAugmentation):
    s_crop, s_hue, s_sat, s_flip = split_seeds(seed, 4)
    shape = tf.shape(image)
    if aug.pad:
        padded = tf.pad(image, [[aug.pad, aug.pad], [aug.pad, aug.pad], [0, 0]])
        image = tf.image.stateless_random_crop(padded, shape, s_crop)
    if aug.hue:
        image = tf.image.stateless_random_hue(image, aug.hue, s_hue)
    if aug.saturation:
        image = tf.image.stateless_random_saturation(
            image, 1 - aug.saturation, 1 + aug.saturation, s_sat
        )
    if aug.flip:
        image = tf.image.stateless_random_flip_left_right(image, s_flip)
    return image


def classification_pipeline(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    training: bool,
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    augmentation: ClassificationAugmentation | None = None,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of (normalised float32 NxHxWxC, int32 labels N) from uint8 arrays.

    Training shuffles the whole set every epoch, augments and keeps the last partial batch
    (as PyTorch's DataLoader); `seed` makes the pipeline deterministic.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    augmentation = augmentation or ClassificationAugmentation()
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    options = tf.data.Options()
    options.deterministic = seed is not None
    ds = ds.with_options(options)
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: (_augment(pair[0], s, augmentation), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size).map(
        lambda x, y: (normalize(x, mean, std), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.prefetch(tf.data.AUTOTUNE)
