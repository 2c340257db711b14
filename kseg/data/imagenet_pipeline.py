"""tf.data pipeline of ImageNet classification from image files, as HRNet-Image-
Classification trains and validates (tools/train.py, torchvision's transforms):

- training: RandomResizedCrop (a window of 8% to 100% of the image's area, aspect ratio
  3/4 to 4/3, resized to the crop size) and a horizontal flip;
- evaluation: the shorter side resized to crop / 0.875 (256 for 224) and the centre crop;
  `ten_crops` gives the four corners, the centre and their mirror images instead
  (Krizhevsky et al. 2012's 10-crop testing).

Images come out as float32 in [0, 1], as the segmentation recipes give them, so that the
pre-trained weights meet the same input when they initialise a segmentation network (the
HRNets built with `convention="pytorch"` normalise by ImageNet's mean and std inside).

Two details differ from torchvision's RandomResizedCrop: TensorFlow samples the aspect
ratio uniformly (torchvision log-uniformly) and, when ten draws find no window inside the
image, takes the whole image (torchvision a centre window of the nearest allowed ratio).
JPEG files are decoded only inside the training window (`decode_and_crop_jpeg`); the few
other files under a .JPEG name (ImageNet's train set has a PNG and CMYK JPEGs) are read by
their content. JPEGs are decoded with libjpeg's accurate DCT, as Pillow (torchvision's
reader) decodes them: TensorFlow's default DCT gives slightly different pixels
(bench/jpeg_dct.py), and HRNet's published classifier is to be scored on the pixels its
own code saw.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kseg.data.pipeline import split_seeds

CROP_FRACTION = 0.875  # evaluation: the crop is this fraction of the resized shorter side
AREA_RANGE = (0.08, 1.0)
ASPECT_RANGE = (3 / 4, 4 / 3)


def eval_resize(crop: int) -> int:
    """The shorter side an evaluation image is resized to: 256 for a 224 crop."""
    return int(crop / CROP_FRACTION)


ACCURATE_DCT = "INTEGER_ACCURATE"  # libjpeg's islow, Pillow's


def decode(contents):
    """uint8 (H, W, 3) of an encoded JPEG, PNG, GIF or BMP, greyscale and CMYK included:
    Pillow's pixels."""
    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method=ACCURATE_DCT),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def random_resized_crop(contents, size: int, seed):
    """The training crop of one encoded image (see the module docstring): (size, size, 3)
    float32 in [0, 255]. Each file is decoded once: a JPEG inside its window only."""

    def window(shape):
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=ASPECT_RANGE,
            area_range=AREA_RANGE,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin, extent

    def jpeg():
        begin, extent = window(tf.image.extract_jpeg_shape(contents))
        box = tf.stack([begin[0], begin[1], extent[0], extent[1]])
        return tf.image.decode_and_crop_jpeg(contents, box, channels=3, dct_method=ACCURATE_DCT)

    def other():
        image = decode(contents)
        return tf.slice(image, *window(tf.shape(image)))

    crop = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    crop.set_shape([None, None, 3])
    return tf.image.resize(crop, (size, size), method="bilinear", antialias=True)


def _shorter_to(shape, side: int):
    """The float32 (height, width) of an image of int `shape` whose shorter side is
    resized to `side`, the longer one truncated as torchvision's Resize(int) does."""
    shape = tf.cast(shape, tf.float32)
    return tf.floor(shape * (side / tf.reduce_min(shape)) + 1e-4)  # the shorter side exactly


def resize_shorter(image, side: int):
    """`image` resized so that its shorter side is `side` (bilinear, antialiased), the
    longer one truncated as torchvision's Resize(int) does: float32 in [0, 255]."""
    new = _shorter_to(tf.shape(image)[:2], side)
    return tf.image.resize(image, tf.cast(new, tf.int32), method="bilinear", antialias=True)


def _centre(height, width, size: int):
    """The (top, left) of the centre (size, size) window of a `height` x `width` image
    (torchvision's CenterCrop rounds half to even too)."""
    top = tf.round(tf.cast(height - size, tf.float32) / 2)
    left = tf.round(tf.cast(width - size, tf.float32) / 2)
    return top, left


def _window(image, top, left, size: int):
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def center_crop(contents, size: int):
    """The evaluation crop of one encoded image: the shorter side to `eval_resize(size)`,
    the centre (size, size) window, float32 in [0, 255]. Only the window is computed
    (`ScaleAndTranslate`, what `tf.image.resize` antialiases with, given the resize's
    scale and the window's offset): the pixels of resizing the whole image and cropping,
    to float32 rounding, without resizing the rest (at 224, 43% of a 256x341 image)."""
    image = decode(contents)
    shape = tf.shape(image)[:2]
    new = _shorter_to(shape, eval_resize(size))
    top, left = _centre(new[0], new[1], size)
    crop = tf.raw_ops.ScaleAndTranslate(
        images=image[None],
        size=[size, size],
        scale=new / tf.cast(shape, tf.float32),
        translation=-tf.stack([top, left]),
        kernel_type="triangle",
        antialias=True,
    )
    return tf.ensure_shape(crop[0], [size, size, 3])


def ten_crops(contents, size: int):
    """(10, size, size, 3): the corners (top-left, top-right, bottom-left, bottom-right) and
    centre of the image resized as `center_crop`'s, then their mirror images."""
    image = resize_shorter(decode(contents), eval_resize(size))
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top, left = (tf.cast(v, tf.int32) for v in _centre(h, w, size))
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    crops = tf.stack([_window(image, t, x, size) for t, x in corners])
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def imagenet_pipeline(
    paths,
    labels: np.ndarray,
    batch_size: int,
    training: bool,
    size: int = 224,
    seed: int | None = None,
    crops: str = "center",
) -> tf.data.Dataset:
    """Batches of (float32 images in [0, 1], int32 labels) from image files.

    Training shuffles all paths every epoch and keeps the last partial batch (as
    PyTorch's DataLoader); `seed` makes it deterministic. Evaluation keeps the order;
    `crops="ten"` gives (N, 10, size, size, 3) batches (`ten_crops`).
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} images but {len(labels)} labels")
    if crops not in ("center", "ten"):
        raise ValueError(f"crops must be 'center' or 'ten', got {crops!r}")
    ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, np.int32)))
    options = tf.data.Options()
    options.deterministic = seed is not None or not training
    ds = ds.with_options(options)
    if training:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

        def augment(pair, s):
            s_crop, s_flip = split_seeds(s, 2)
            image = random_resized_crop(tf.io.read_file(pair[0]), size, s_crop)
            return tf.image.stateless_random_flip_left_right(image, s_flip), pair[1]

        ds = tf.data.Dataset.zip((ds, seeds)).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        crop = ten_crops if crops == "ten" else center_crop
        ds = ds.map(
            lambda p, y: (crop(tf.io.read_file(p), size), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
