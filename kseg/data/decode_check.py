"""Which image files TensorFlow's decoders cannot read and which TIFF files are cut short,
named, and whether an error that stopped a pipeline was one of them.

A file cut short (an interrupted copy, download or unzip) keeps its header, so a check of
headers passes it; TensorFlow's decoder then stops the pipeline at it with an error that
names no file, and when the pipeline decodes a crop window only (ImageNet's training
crops) it does so only for the windows that reach the missing part. `undecodable`
decodes each file whole, JPEGs at an eighth of their size (libjpeg still reads every
byte), in parallel (`bench/decode_check.py` measures it against Pillow); HEIC files,
which TensorFlow does not read, are decoded whole by Pillow (pillow-heif). TIFF files,
which Pillow reads (aerial and microscopy images of thousands of pixels a side), are not
decoded: `tiff_cut_short` compares where their header says the image data ends with the
file's size.

A file that decoded is remembered by its path, size and modification time
(`remembered_decoded`, in the Keras cache), so that the next command over the same files
decodes only the files added or changed since: a check of ImageNet's 1.28M training
images takes minutes the first time and the time to list them after.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np

from kseg.predict.standalone import HEIF_EXTENSIONS
from kseg.utils.cache import kseg_cache

# The formats `undecodable` checks (HEIF_EXTENSIONS: Pillow's, through pillow-heif); PNG's
# chunk checksums are Pillow's to verify (`kseg.data.base`), TIFF's data `tiff_cut_short`'s.
DECODED_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".gif", ".webp", *HEIF_EXTENSIONS)
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


def remembered_decoded() -> str:
    """The record of the files that decoded: `kseg/decoded-files.npy` in the Keras cache
    (`kseg.utils.cache.kseg_cache`), 8 bytes a file."""
    return kseg_cache("decoded-files.npy")


def _fingerprints(paths: list[str]) -> np.ndarray:
    """uint64 of each file's path, size and modification time (0 for a file that cannot
    be listed: never remembered as decoded)."""
    prints = np.zeros(len(paths), np.uint64)
    for i, path in enumerate(paths):
        try:
            st = os.stat(path)
        except OSError:
            continue
        key = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()
        prints[i] = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") | 1
    return prints


def _read_record() -> np.ndarray:
    try:
        return np.load(remembered_decoded())
    except (OSError, ValueError):  # none yet, or unreadable: checked afresh
        return np.zeros(0, np.uint64)


def _remember(prints: np.ndarray) -> None:
    """Adds `prints` to the record (merged with what another process wrote meanwhile)."""
    if not len(prints):
        return
    path = remembered_decoded()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial.npy"
    np.save(partial, np.union1d(_read_record(), prints))
    os.replace(partial, path)


def undecodable(paths, remember: bool = True) -> dict[str, str]:
    """{path: "PATH: unreadable (TensorFlow's decoder: its reason)"} for each of `paths`
    that TensorFlow cannot decode (Pillow, for HEIC files), in the order of `paths`. With
    `remember`, files that decoded before, unchanged since (`remembered_decoded`), are not
    decoded again, and those that decode now are remembered."""
    paths = list(paths)
    if not remember:
        return _decode_all(paths)
    prints = _fingerprints(paths)
    known = np.isin(prints, _read_record()) & (prints != 0)
    problems = _decode_all([p for p, k in zip(paths, known, strict=True) if not k])
    decoded = ~known & (prints != 0) & np.array([p not in problems for p in paths], bool)
    _remember(prints[decoded])
    return {p: problems[p] for p in paths if p in problems}


def _decode_all(paths: list[str]) -> dict[str, str]:
    """`undecodable` without the record: every file decoded."""
    heif = {p for p in paths if p.lower().endswith(HEIF_EXTENSIONS)}
    problems = {**_tensorflow_undecodable([p for p in paths if p not in heif]),
                **_pillow_undecodable([p for p in paths if p in heif])}  # fmt: skip
    return {p: problems[p] for p in paths if p in problems}


def _pillow_undecodable(paths: list[str]) -> dict[str, str]:
    """`undecodable` for HEIC/HEIF files, which Pillow decodes (through pillow-heif), a
    thread per core."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from kseg.predict.standalone import UsageError, heif_opener

    if not paths:
        return {}
    try:
        heif_opener()
    except UsageError as e:  # pillow-heif is not installed
        return {p: f"{p}: unreadable ({e})" for p in paths}

    def problem(path: str) -> str | None:
        try:
            with Image.open(path) as im:
                im.load()
            return None
        except Exception as e:  # Pillow and pillow-heif raise many types
            return f"{path}: unreadable (Pillow's decoder: {e})"

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        found = dict(zip(paths, pool.map(problem, paths), strict=True))
    return {p: why for p, why in found.items() if why}


def _tensorflow_undecodable(paths: list[str]) -> dict[str, str]:
    import tensorflow as tf

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
