"""Image files decoded for the training pipeline: every format the data checks accept,
the way every viewer shows them.

- Formats: TensorFlow's decoders read JPEG (with libjpeg's accurate DCT, so the pixels
  are Pillow's, which `kseg.predict` reads), PNG, BMP, GIF and WebP; TIFF (microscopy,
  remote sensing) and HEIC/HEIF (iPhones' photos, through pillow-heif, whose libheif
  applies the file's rotation) go through Pillow, with kseg's predictions' reading of
  images (`kseg.predict.standalone.to_rgb`: 16-bit images scaled to 8 bits, as
  TensorFlow's PNG decoder scales them).
- Orientation: a camera or phone stores a photo taken upright (portrait) as landscape
  pixels and says in the file's EXIF "Orientation" tag how to turn them. Image viewers,
  labelling tools (labelme, CVAT) and OpenCV's `imread` turn the pixels, so a mask drawn
  on such a photo follows the turned image; TensorFlow's decoders and PIL's `Image.open`
  do not. kseg turns every image it reads, and the masks of your own data
  (`kseg.data.folder.read_mask`), by its tag, as PIL's `ImageOps.exif_transpose` does, so
  that a photo and its mask line up and a prediction comes out the way the photo is seen.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image

from kseg.predict.standalone import MAX_IMAGE_PIXELS, heif_opener, to_rgb

ORIENTATION_TAG = 0x0112  # EXIF 274
# Orientations 5 to 8 turn the image by a quarter: height and width swap.
SWAPS_SIDES = (5, 6, 7, 8)
# How a TIFF file starts (little- and big-endian), the format TensorFlow does not decode.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# The box an ISO base media file (HEIC, HEIF) starts with after its length, at byte 4.
HEIF_BOX = b"ftyp"
JPEG_MAGIC = b"\xff\xd8\xff"


def orientation_of(im: Image.Image) -> int:
    """The EXIF orientation of an open PIL image, 1 to 8 (1, upright, when it has none)."""
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block: viewers show the pixels as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _bytes(data) -> bytes:
    """A string as `tf.numpy_function` hands it over: bytes inside a graph (tf.data), a
    0-d array when called eagerly."""
    return data.item() if isinstance(data, np.ndarray) else data


def exif_orientation(data) -> np.int32:
    """The EXIF orientation of an encoded image (any format PIL reads), from its header."""
    data = _bytes(data)
    if data[:4] == b"\x89PNG" and b"eXIf" not in data:
        return np.int32(1)  # PIL would decode the whole PNG looking for its EXIF chunk
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.int32(orientation_of(im))
    except Exception:  # not an image PIL reads: TensorFlow's decoder reports it
        return np.int32(1)


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of an open PIL image as it is shown, its EXIF orientation applied."""
    w, h = im.size
    return (h, w) if orientation_of(im) in SWAPS_SIDES else (w, h)


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """An H x W x C image tensor turned by its EXIF `orientation` (an int32 scalar, 1-8),
    the transposes of `ImageOps.exif_transpose`."""

    def transpose(x):
        return tf.transpose(x, [1, 0, 2])

    branches = [
        lambda: image,  # 1: upright
        lambda: image[:, ::-1],  # 2: mirrored left-right
        lambda: image[::-1, ::-1],  # 3: turned 180 degrees
        lambda: image[::-1],  # 4: mirrored top-bottom
        lambda: transpose(image),  # 5: mirrored about the main diagonal
        lambda: transpose(image[::-1]),  # 6: turned 90 degrees clockwise to be upright
        lambda: transpose(image[::-1, ::-1]),  # 7: mirrored about the other diagonal
        lambda: transpose(image[:, ::-1]),  # 8: turned 90 degrees counter-clockwise
    ]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    return tf.switch_case(index, branches)


def _pillow_rgb(data) -> np.ndarray:
    data = _bytes(data)
    if data[4:8] == HEIF_BOX:
        heif_opener()  # registered once; the dataset's checks asked for it before
    with Image.open(io.BytesIO(data)) as im:
        return to_rgb(im)


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """An encoded image (a scalar string tensor) as uint8 H x W x 3, turned by its EXIF
    orientation: TensorFlow's decoders, or Pillow for TIFF and HEIC/HEIF."""

    def tensorflow():
        image = tf.cond(
            tf.equal(tf.strings.substr(data, 0, 3), JPEG_MAGIC),
            # libjpeg's accurate DCT, libjpeg's default, which Pillow and OpenCV use, so
            # training sees the pixels `kseg.predict` and the deployed app see; TensorFlow's
            # default (INTEGER_FAST) is off by up to a dozen levels.
            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
        )
        orientation = tf.numpy_function(exif_orientation, [data], tf.int32, stateful=False)
        return orient(image, tf.reshape(orientation, []))

    def pillow():
        image = tf.numpy_function(_pillow_rgb, [data], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    head = tf.strings.substr(data, 0, 4)
    is_tiff = tf.reduce_any(tf.equal(head, TIFF_MAGIC))
    is_heif = tf.cond(  # (substr past the end is an error: a file too short to be one)
        tf.strings.length(data) >= 8,
        lambda: tf.equal(tf.strings.substr(data, 4, 4), HEIF_BOX),
        lambda: tf.constant(False),
    )
    return tf.cond(is_tiff | is_heif, pillow, tensorflow)


@contextlib.contextmanager
def large_images(limit: int | None = MAX_IMAGE_PIXELS):
    """Pillow opens images of up to `limit` pixels (None: any) without its
    decompression-bomb warning or error (which come at its limit and twice it) while the
    block runs."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit and limit // 2  # Pillow refuses twice its limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = before
