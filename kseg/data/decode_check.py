"""Which image files TensorFlow's decoders cannot read and which TIFF files are cut short,
named, and whether an error that stopped a pipeline was one of them.

A file cut short (an interrupted copy, download or unzip) keeps its header, so a check of
headers passes it; TensorFlow's decoder then stops the pipeline at it with an error that
names no file, and when the pipeline decodes a crop window only (ImageNet's training
crops) it does so only for the windows that reach the missing part. `undecodable`
decodes each file whole, JPEGs at an eighth of their size (libjpeg still reads every
byte), in parallel (`bench/decode_check.py` measures it against Pillow). TIFF files,
which Pillow reads (aerial and microscopy images of thousands of pixels a side), are not
decoded: `tiff_cut_short` compares where their header says the image data ends with the
file's size.
"""

from __future__ import annotations

import os
import re

import numpy as np

# The formats `undecodable` checks; PNG's chunk checksums are Pillow's to verify
# (`kseg.data.base`), TIFF's data `tiff_cut_short`'s.
DECODED_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")
# TIFF tags: where the strips (or tiles) of the first image start, and their lengths.
_STRIP_OFFSETS, _STRIP_BYTES, _TILE_OFFSETS, _TILE_BYTES = 273, 279, 324, 325
_DECODE_OPS = re.compile(
    r"\b(DecodeAndCropJpeg|DecodeJpeg|DecodePng|DecodeImage|DecodeBmp|DecodeGif|DecodeWebP|"
    r"ExtractJpegShape)\b"
)


def _decode_shape(contents):
    import tensorflow as tf

    def jpeg():
        return tf.shape(tf.io.decode_jpeg(contents, channels=3, ratio=8))

    def other():
        return tf.shape(tf.io.decode_image(contents, channels=3, expand_animations=False))

    return tf.cond(tf.io.is_jpeg(contents), jpeg, other)


def undecodable(paths) -> dict[str, str]:
    """{path: "PATH: unreadable (TensorFlow's decoder: its reason)"} for each of `paths`
    that TensorFlow cannot decode, in the order of `paths`."""
    import tensorflow as tf

    paths = list(paths)
    if not paths:
        return {}
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    ds = ds.map(
        lambda i, p: (i, _decode_shape(tf.io.read_file(p))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    decoded = np.zeros(len(paths), bool)
    for index, _ in ds.ignore_errors().batch(1024):
        decoded[index.numpy()] = True
    problems = {}
    for i in np.flatnonzero(~decoded):  # few: decoded again one by one for the reason
        try:
            _decode_shape(tf.io.read_file(paths[i]))
            reason = "decoded on a second try: the file changed during the check"
        except tf.errors.OpError as e:
            reason = tensorflow_reason(e)
        problems[paths[i]] = f"{paths[i]}: unreadable (TensorFlow's decoder: {reason})"
    return problems


def tiff_cut_short(paths) -> dict[str, str]:
    """{path: "PATH: unreadable (cut short: ...)"} for each TIFF of `paths` whose image data
    runs past the end of the file, read from its header's strip or tile table (a file
    whose header is lost too is the header check's to report)."""
    from PIL import Image

    problems = {}
    for path in paths:
        try:
            with Image.open(path) as im:
                tags = im.tag_v2
                offsets = tags.get(_STRIP_OFFSETS) or tags.get(_TILE_OFFSETS)
                counts = tags.get(_STRIP_BYTES) or tags.get(_TILE_BYTES)
        except Exception:  # not a TIFF Pillow opens: the header check names it
            continue
        if not offsets or not counts:
            continue
        end, size = max(o + c for o, c in zip(offsets, counts, strict=False)), os.path.getsize(path)
        if end > size:
            problems[path] = (
                f"{path}: unreadable (cut short: its image data ends at byte {end:,}, the file "
                f"at byte {size:,})"
            )
    return problems


def tensorflow_reason(error: BaseException) -> str:
    """The line of a TensorFlow error that says what went wrong, without its node and
    device names ("jpeg::Uncompress failed. Invalid JPEG data or crop window.")."""
    text = getattr(error, "message", str(error))
    for line in text.splitlines():
        line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line).strip()
        line = re.sub(r"\s*\[Op:\w+\].*$", "", line)
        line = re.sub(r"^Error in user-defined function .*?Iterator::\S+: ", "", line)
        if line and not line.startswith(("Graph execution error", "Detected at node", "<", "[[")):
            return line
    return text.strip()


def decode_failure(error: BaseException) -> str | None:
    """TensorFlow's reason when `error` is an image decoder's failure to read its input
    (known by the op's name), else None."""
    if type(error).__name__ != "InvalidArgumentError" or not _DECODE_OPS.search(str(error)):
        return None
    return tensorflow_reason(error)
