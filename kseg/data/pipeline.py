"""tf.data pipelines: decode, map labels, augment (ContextNet section 3.1), batch, prefetch.

Training: random scale (0.5-2), random crop padded with the ignore label, horizontal flip,
hue/saturation/brightness/contrast jitter. Evaluation: the whole image (or its centre
window, `eval_crop`), padded at the bottom and right to the model's input multiple with
the ignore label. Images come out as
float32 in [0, 1], labels as int32 training ids with 255 ignored.

With a `seed`, every random choice is a stateless op whose seed comes from a seeded
`tf.data.Dataset.random` stream, and the dataset is made deterministic: the same seed
gives the same batches, epoch after epoch, on any number of cores.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kseg.data.base import IGNORE_LABEL, Sample, SegmentationDataset
from kseg.data.images import decode_image


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation. The paper (ContextNet section 3.1) names the operations
    but not their ranges beyond the scale; the jitter ranges are kseg's choice."""

    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    hue: float = 0.05  # max delta, fraction of the hue circle
    saturation: tuple[float, float] = (0.75, 1.25)
    brightness: float = 0.125  # max delta on [0, 1] images
    contrast: tuple[float, float] = (0.75, 1.25)

    @classmethod
    def none(cls) -> Augmentation:
        return cls((1.0, 1.0), False, 0.0, (1.0, 1.0), 0.0, (1.0, 1.0))


def _color_table(colors: np.ndarray) -> tf.lookup.StaticHashTable:
    c = colors.astype(np.int64)
    codes = c[:, 0] * 65536 + c[:, 1] * 256 + c[:, 2]
    if len(np.unique(codes)) != len(codes):
        raise ValueError("label colours must be distinct to map them back to values")
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(codes, tf.int64), tf.range(len(colors), dtype=tf.int64)
        ),
        default_value=IGNORE_LABEL,
    )


def _label_values(label_path, colors):
    """The values of a label PNG: as stored (8 or 16 bits; past 255 they read as 255, the
    ignore label), or mapped back from `colors` (a table made by `_color_table`) when the
    PNG holds colours."""
    data = tf.io.read_file(label_path)

    def eight_bit():  # 16-bit colours come scaled to 8 bits, as viewers show them
        return tf.io.decode_png(data, channels=0)

    def sixteen_bit():  # one channel: the values as stored, not scaled by 1/257
        values = tf.io.decode_png(data, channels=0, dtype=tf.uint16)
        as_values = tf.cast(tf.minimum(values, IGNORE_LABEL), tf.uint8)
        return tf.cond(tf.shape(values)[-1] >= 3, eight_bit, lambda: as_values)

    bit_depth = tf.strings.substr(data, 24, 1)  # the PNG header's IHDR chunk
    raw = tf.cond(tf.equal(bit_depth, b"\x10"), sixteen_bit, eight_bit)
    if colors is None:
        return raw[..., 0]

    # Palette PNGs decode to RGB(A); value PNGs (e.g. VOC's SegmentationClassAug) decode to
    # one channel and are used as they are.
    def from_colors():
        rgb = tf.cast(raw[..., :3], tf.int64)
        code = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
        return tf.cast(colors.lookup(code), tf.uint8)

    return tf.cond(tf.shape(raw)[-1] >= 3, from_colors, lambda: raw[..., 0])


def make_label_decoder(dataset: SegmentationDataset):
    """A function label_path -> uint8 HxW training ids."""
    label_map = tf.constant(dataset.label_map, tf.uint8)
    colors = None if dataset.label_colors is None else _color_table(dataset.label_colors)
    # A reader may decode its label files itself (e.g. palette PNGs read as indices).
    custom = getattr(dataset, "decode_label", None)

    def decode(label_path):
        values = custom(label_path) if custom else _label_values(label_path, colors)
        label = tf.gather(label_map, tf.cast(values, tf.int32))
        label.set_shape([None, None])
        return label

    return decode


def make_decoder(dataset: SegmentationDataset):
    """A function (image_path, label_path) -> (uint8 HxWx3 image, uint8 HxW training ids)."""
    decode_label = make_label_decoder(dataset)

    def decode(image_path, label_path):
        image = decode_image(tf.io.read_file(image_path))
        image.set_shape([None, None, 3])
        return image, decode_label(label_path)

    return decode


def split_seeds(seed, n: int):
    """`n` independent stateless seeds from one int64[2] seed."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _resize_sources(start, count, in_size, out_size):
    """Where `tf.image.resize` (half-pixel centres) takes output pixels start ... start +
    count - 1 of a side resized from `in_size` to `out_size`: the nearest neighbour's
    source index, and bilinear's lower and upper source indices and weight, computed as
    TensorFlow's CPU kernels compute them (float32), so that the results are theirs."""
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    centres = tf.cast(tf.range(start, start + count), tf.float32) + 0.5
    nearest = tf.minimum(tf.cast(tf.floor(centres * scale), tf.int32), in_size - 1)
    at = centres * scale - 0.5
    floor = tf.floor(at)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(at), tf.int32), in_size - 1)
    return nearest, lower, upper, at - floor


# Where `scaled_window` reads the window's source pixels alone: when the resized image
# has more than this many times the window's pixels. Per pixel, TensorFlow's resize kernel
# is several times faster than the gathers (bench/RESULTS.md, input_pipeline).
WINDOW_FROM_SOURCES_ABOVE = 8


def scaled_window(image, label, new_size, corner, window):
    """The `window` (h, w) at `corner` (y, x) of `image` resized bilinearly and `label`
    by nearest neighbour to `new_size`, as `tf.image.resize` gives them (the image as
    float32 in [0, 1], the label as int32), padded with 0 / the ignore label where the
    window reaches past the resized image. A window much smaller than the resized image
    (a crop of a large photo) is computed from its own source pixels alone, bit for bit
    the same, so that the photo is not resized whole."""
    new_area = tf.cast(new_size[0], tf.float32) * tf.cast(new_size[1], tf.float32)
    small = new_area > WINDOW_FROM_SOURCES_ABOVE * window[0] * window[1]
    return tf.cond(
        small,
        lambda: _window_from_sources(image, label, new_size, corner, window),
        lambda: _window_of_resized(image, label, new_size, corner, window),
    )


def _window_of_resized(image, label, new_size, corner, window):
    """`scaled_window` by resizing the whole image and label, then cropping."""
    img = tf.image.resize(tf.cast(image, tf.float32) / 255.0, new_size, method="bilinear")
    lab = tf.cast(tf.image.resize(label[..., None], new_size, method="nearest")[..., 0], tf.int32)
    pad_h, pad_w = tf.maximum(window[0] - new_size[0], 0), tf.maximum(window[1] - new_size[1], 0)
    img = tf.pad(img, [[0, pad_h], [0, pad_w], [0, 0]])
    lab = tf.pad(lab, [[0, pad_h], [0, pad_w]], constant_values=IGNORE_LABEL)
    (y, x), (h, w) = tf.unstack(corner), window
    return img[y : y + h, x : x + w], lab[y : y + h, x : x + w]


def _window_from_sources(image, label, new_size, corner, window):
    """`scaled_window` from the source pixels under the window: TensorFlow's resize
    kernels' arithmetic on gathered rows and columns (each of image and label from its
    own size, as each is resized)."""
    inside = tf.minimum(tf.constant(window), new_size - corner)

    def sources(shape):
        rows = _resize_sources(corner[0], inside[0], shape[0], new_size[0])
        return rows, _resize_sources(corner[1], inside[1], shape[1], new_size[1])

    (nearest_rows, *_), (nearest_cols, *_) = sources(tf.shape(label))
    lab = tf.gather(tf.gather(label, nearest_rows), nearest_cols, axis=1)
    rows, cols = sources(tf.shape(image))

    def pixels(source_rows, c):
        return tf.cast(tf.gather(source_rows, c, axis=1), tf.float32) / 255.0

    (_, top, bottom, y_lerp), (_, left, right, x_lerp) = rows, cols
    x_lerp, y_lerp = x_lerp[None, :, None], y_lerp[:, None, None]
    top_rows, bottom_rows = tf.gather(image, top), tf.gather(image, bottom)
    top_left, top_right = pixels(top_rows, left), pixels(top_rows, right)
    bottom_left, bottom_right = pixels(bottom_rows, left), pixels(bottom_rows, right)
    # The order of TensorFlow's bilinear kernel: along each row, then between the rows.
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    img = upper + (lower - upper) * y_lerp
    pad_h, pad_w = window[0] - inside[0], window[1] - inside[1]
    img = tf.pad(img, [[0, pad_h], [0, pad_w], [0, 0]])
    lab = tf.pad(tf.cast(lab, tf.int32), [[0, pad_h], [0, pad_w]], constant_values=IGNORE_LABEL)
    return img, lab


def augment(image, label, seed, crop: tuple[int, int], aug: Augmentation):
    """Random scale, crop (padded with 0 / the ignore label), flip and colour jitter.

    `image` uint8 HxWx3, `label` uint8 HxW, `seed` an int64[2]. Returns float32 [0, 1]
    image and int32 label of size `crop`: the crop of the whole image resized (bilinear;
    nearest for the label) and padded to at least `crop` (`scaled_window`).
    """
    s_scale, s_crop_y, s_crop_x, s_flip, s_hue, s_sat, s_bri, s_con = split_seeds(seed, 8)
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    lo, hi = aug.scale_range
    scale = tf.random.stateless_uniform([], s_scale, lo, hi) if hi > lo else tf.constant(lo)
    new = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
    ch, cw = crop
    h, w = tf.maximum(new[0], ch), tf.maximum(new[1], cw)  # the resized image, padded
    y = tf.random.stateless_uniform([], s_crop_y, 0, h - ch + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], s_crop_x, 0, w - cw + 1, dtype=tf.int32)
    img, lab = scaled_window(image, label, new, tf.stack([y, x]), crop)
    if aug.flip:
        flip = tf.random.stateless_uniform([], s_flip) < 0.5
        img = tf.cond(flip, lambda: img[:, ::-1], lambda: img)
        lab = tf.cond(flip, lambda: lab[:, ::-1], lambda: lab)
    if aug.hue:
        img = tf.image.stateless_random_hue(img, aug.hue, s_hue)
    if aug.saturation != (1.0, 1.0):
        img = tf.image.stateless_random_saturation(img, *aug.saturation, s_sat)
    if aug.brightness:
        img = tf.image.stateless_random_brightness(img, aug.brightness, s_bri)
    if aug.contrast != (1.0, 1.0):
        img = tf.image.stateless_random_contrast(img, *aug.contrast, s_con)
    img = tf.clip_by_value(img, 0.0, 1.0)
    img.set_shape([ch, cw, 3])
    lab.set_shape([ch, cw])
    return img, lab


def pad_to_multiple(image, label, multiple: int):
    """Pads bottom and right so height and width are multiples of `multiple`."""
    shape = tf.shape(label)
    pad_h = (-shape[0]) % multiple
    pad_w = (-shape[1]) % multiple
    image = tf.pad(tf.cast(image, tf.float32) / 255.0, [[0, pad_h], [0, pad_w], [0, 0]])
    label = tf.pad(tf.cast(label, tf.int32), [[0, pad_h], [0, pad_w]], constant_values=IGNORE_LABEL)
    return image, label


def center_crop(image, label, size: tuple[int, int]):
    """The central `size` window of an image and its label; a smaller image is padded
    evenly (0 for the image, the ignore label for the label)."""
    h, w = size
    image = tf.image.resize_with_crop_or_pad(image, h, w)
    # Shift labels by one so that the zero padding marks the border, then map it to 255.
    shifted = tf.image.resize_with_crop_or_pad(tf.cast(label, tf.int32)[..., None] + 1, h, w)
    label = tf.where(shifted[..., 0] == 0, IGNORE_LABEL, shifted[..., 0] - 1)
    return image, label


def segmentation_pipeline(
    dataset: SegmentationDataset,
    samples: list[Sample],
    batch_size: int,
    training: bool,
    crop: tuple[int, int] | None = None,
    augmentation: Augmentation | None = None,
    seed: int | None = None,
    pad_multiple: int = 1,
    shuffle_buffer: int = 1000,
    drop_remainder: bool = False,
    eval_crop: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """Batches of (image float32 NxHxWx3 in [0, 1], label int32 NxHxW) from `samples`.

    Args:
        dataset: the reader (its label mapping and colours).
        samples: `dataset.samples(split)`.
        training: shuffle, augment and crop (to `crop`, required) and drop the last
            partial batch; otherwise whole images padded to `pad_multiple`, batched with
            padding (0 for images, 255 for labels).
        seed: makes the whole pipeline deterministic.
        drop_remainder: evaluation only; leave out a last partial batch (a distribution
            strategy needs every replica to get images).
        eval_crop: evaluation only; the centre (height, width) window of each image
            (padded if smaller) instead of the whole image, as Ikedo & Hotta 2022
            validate on VOC.
    """
    if training and crop is None:
        raise ValueError("training pipelines need a crop size (height, width)")
    augmentation = augmentation or Augmentation()
    decode = make_decoder(dataset)
    paths = tf.data.Dataset.from_tensor_slices(
        ([s.image for s in samples], [s.label for s in samples])
    )
    options = tf.data.Options()
    options.deterministic = seed is not None
    paths = paths.with_options(options)
    if training:
        paths = paths.shuffle(
            min(shuffle_buffer, len(samples)), seed=seed, reshuffle_each_iteration=True
        )
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((paths, seeds)).map(
            lambda p, s: augment(*decode(*p), s, crop, augmentation),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        ds = ds.batch(batch_size, drop_remainder=True)
    else:

        def load(image_path, label_path):
            image, label = decode(image_path, label_path)
            if eval_crop is not None:
                image, label = center_crop(image, label, eval_crop)
            return pad_to_multiple(image, label, pad_multiple)

        ds = paths.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.padded_batch(
            batch_size, padding_values=(0.0, IGNORE_LABEL), drop_remainder=drop_remainder
        )
    return ds.prefetch(tf.data.AUTOTUNE)
