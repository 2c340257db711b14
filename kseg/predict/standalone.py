"""segment.py: segment images with a kseg `.tflite` file, or benchmark it.

This file (`kseg.predict.standalone` inside kseg) is copied into every export folder as
`segment.py`. It needs only ai-edge-litert, numpy and pillow (no TensorFlow, no kseg), so
it runs on an edge board as it is; kseg's own predictions use its image reading,
resizing, quantisation and output code, so both write the same files:

    pip install ai-edge-litert numpy pillow     # and pillow-heif for iPhones' HEIC photos
    python segment.py MODEL.tflite IMAGES_OR_FOLDERS... --out DIR
    python segment.py MODEL.tflite --benchmark [--threads 4] [--runs 50]

Its command line is `python -m kseg.predict`'s for images and folders. For each image DIR
gets `<name>_pred.png` (the label map as a palette PNG) and `<name>_overlay.jpg`, and on
request Cityscapes labelIds (`--label-ids`) and per-class probabilities
(`--probabilities`). Images are resized to the file's input size (bilinear, as
`tf.image.resize`) and the logits back to each image's size.

`--benchmark` times the interpreter in the manner of LiteRT's `benchmark_model`: warm-up
runs, then timed runs of `invoke` alone, with and without the XNNPACK delegate, each in a
fresh process so that its peak memory is its own. It prints start-up time, p50, p90 and
mean latency, the process's peak resident memory, and the part of it the interpreter
added (`delta`, benchmark_model's "memory footprint delta").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import glob
import hashlib
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageOps

# iPhones' photos (HEIC): Pillow reads them through pillow-heif, when it is installed.
HEIF_EXTENSIONS = (".heic", ".heif")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", *HEIF_EXTENSIONS)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")

# Cityscapes' 19 evaluated classes: colour and official labelId of each trainId.
CITYSCAPES_COLOURS = np.array(
    [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
     [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
     [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
     [0, 80, 100], [0, 0, 230], [119, 11, 32]],
    np.uint8,
)  # fmt: skip
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


class UsageError(Exception):
    """A mistake in the command line or its files: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- inputs


# What `ImageWriter` and the video overlay name their files: never inputs when found in
# the output folder by a search.
OUTPUT_SUFFIXES = (
    "_pred.png", "_pred.tif", "_overlay.jpg", "_labelIds.png", "_prob.npz", "_overlay.mp4"
)  # fmt: skip


def expand_inputs(inputs: list[str], out: str | None = None) -> tuple[list[str], list[str]]:
    """(images, videos): files as given, folders searched recursively, globs expanded;
    each sorted, without repeats. Found in the output folder `out` (inside an input folder,
    or that folder itself), kseg's own outputs of an earlier run are not inputs. An input
    that matches nothing is a `UsageError`."""
    images, videos = [], []
    outputs = os.path.abspath(out) + os.sep if out else None

    def earlier_output(path: str) -> bool:
        inside = bool(outputs) and os.path.abspath(path).startswith(outputs)
        return inside and path.endswith(OUTPUT_SUFFIXES)

    for item in inputs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "**", "*"), recursive=True))
            found = [p for p in found if not earlier_output(p)]
        elif any(c in item for c in "*?["):
            found = [p for p in sorted(glob.glob(item, recursive=True)) if not earlier_output(p)]
        elif os.path.isfile(item):
            if not item.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
                raise UsageError(
                    f"{item}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or a video "
                    f"({', '.join(VIDEO_EXTENSIONS)})"
                )
            found = [item]
        else:
            raise UsageError(f"{item}: no such file, folder or glob match")
        found = [p for p in found if os.path.isfile(p)]
        matched = [p for p in found if p.lower().endswith(IMAGE_EXTENSIONS)]
        clips = [p for p in found if p.lower().endswith(VIDEO_EXTENSIONS)]
        if not matched and not clips:
            raise UsageError(f"{item}: no images or videos in it")
        images += matched
        videos += clips
    return list(dict.fromkeys(images)), list(dict.fromkeys(videos))


def to_rgb(im: Image.Image) -> np.ndarray:
    """An open image as RGB uint8 (H, W, 3) the way viewers show it: turned by its EXIF
    orientation, and a 16-bit one scaled to 8 bits (the top byte, as TensorFlow's PNG
    decoder scales it) rather than clipped at 255."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # Pillow's 16-bit greyscale
        grey = (np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"))


@functools.cache
def heif_opener() -> None:
    """Lets Pillow open HEIC and HEIF files (pillow-heif's opener, registered once).
    Without pillow-heif, a `UsageError` saying how to install it."""
    try:
        import pillow_heif
    except ImportError:
        raise UsageError("HEIC/HEIF photos need pillow-heif: pip install pillow-heif") from None
    pillow_heif.register_heif_opener()


# The largest image read: OpenCV's limit (CV_IO_MAX_IMAGE_PIXELS), 3 GB of RGB pixels.
# Pillow's own, meant for servers reading strangers' uploads, refuses 179 megapixels,
# which aerial and whole-slide images pass.
MAX_IMAGE_PIXELS = 1 << 30


@contextlib.contextmanager
def open_image(path: str):
    """The image file opened by Pillow (`Image.open`: its header read, not its pixels),
    with kseg's size limit in place of Pillow's; an unreadable file, or one of more than
    `MAX_IMAGE_PIXELS`, is a `UsageError` naming it."""
    if path.lower().endswith(HEIF_EXTENSIONS):
        heif_opener()
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # Image.open checks the size only; checked here
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise UsageError(
                    f"{path}: {im.width}x{im.height} is {im.width * im.height:,} pixels, over "
                    f"the limit of {MAX_IMAGE_PIXELS:,} (OpenCV's); cut it into parts, e.g. "
                    "with gdal_retile.py"
                )
            yield im
    except (OSError, ValueError) as e:
        # Satellite and some drone TIFFs hold 16-bit colour, more bands, or floats.
        tiff = (
            "; TIFFs are read in 8-bit colour or 8- or 16-bit grey: convert it, e.g. "
            "gdal_translate -ot Byte -scale -b 1 -b 2 -b 3 IN.tif OUT.tif"
            if path.lower().endswith((".tif", ".tiff"))
            else ""
        )
        raise UsageError(f"{path}: unreadable image ({e}){tiff}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit


def read_image(path: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file by `to_rgb` (`open_image`'s errors)."""
    with open_image(path) as im:
        return to_rgb(im)


# The tags of the OGC GeoTIFF standard: where an aerial image's pixels lie on the Earth
# (pixel scale and tie points, or a transformation) and in which coordinate system (the
# geo keys and their double and ASCII parameters).
GEOTIFF_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)


@functools.lru_cache(maxsize=256)
def geotiff_tags(path: str) -> tuple[tuple[int, object, int], ...] | None:
    """((tag, value, TIFF type), ...) of the GeoTIFF tags of a TIFF file that places its
    pixels, to write its label map georeferenced (`<name>_pred.tif`); None for another
    file, a TIFF without them, one turned by an orientation tag (its label map is turned
    with it, and the placement would not hold), or an unreadable one (`read_image` names
    it when the image is read)."""
    if not path.lower().endswith((".tif", ".tiff")):
        return None
    try:
        with open_image(path) as im:
            tags = im.tag_v2
            if tags.get(274, 1) != 1 or not (33922 in tags or 34264 in tags):
                return None
            return tuple((t, tags[t], tags.tagtype[t]) for t in GEOTIFF_TAGS if t in tags)
    except UsageError:
        return None


def output_bases(paths: list[str], root_of) -> list[str]:
    """Each input's output path without a suffix: its path relative to `root_of(path)`,
    without its extension. Inputs that would share one (x.jpg in two input folders, or
    x.jpg beside x.png) are named by their paths below their common folder instead (cam1/x,
    cam2/x), keeping their extensions if that still clashes (x.jpg, x.png), so that no
    output overwrites another."""
    bases = [os.path.splitext(os.path.relpath(p, root_of(p)))[0] for p in paths]
    groups: dict[str, list[int]] = {}
    for i, base in enumerate(bases):
        groups.setdefault(base, []).append(i)
    for group in (g for g in groups.values() if len(g) > 1):
        full = [os.path.abspath(paths[i]) for i in group]
        common = os.path.commonpath([os.path.dirname(f) for f in full])
        named = [os.path.splitext(os.path.relpath(f, common))[0] for f in full]
        if len(set(named)) < len(named):
            named = [os.path.relpath(f, common) for f in full]
        for i, name in zip(group, named, strict=True):
            bases[i] = name
    return bases


def output_root(inputs: list[str]):
    """`root_of(path)`: the folder an output name is relative to, the innermost input
    folder holding `path`, else the image's own folder."""
    folders = [os.path.abspath(i) for i in inputs if os.path.isdir(i)]

    def root_of(path: str) -> str:
        path = os.path.abspath(path)
        inside = [f for f in folders if path.startswith(f + os.sep)]
        return max(inside, key=len) if inside else os.path.dirname(path)

    return root_of


def _bilinear_bands(x: np.ndarray, height: int, width: int):
    """Yields (rows, band): `resize_bilinear(x, height, width)[rows]`, a few output rows
    (about 2 MB) at a time, so that the temporaries stay in cache and a large image's
    logits need none of their own size."""

    def axis(out: int, size: int):
        source = (np.arange(out) + 0.5) * (size / out) - 0.5
        floor = np.floor(source)
        low = np.clip(floor, 0, size - 1).astype(int)
        high = np.clip(floor + 1, 0, size - 1).astype(int)
        return low, high, (source - floor).astype(np.float32)

    top, bottom, fy = axis(height, x.shape[0])
    left, right, fx = axis(width, x.shape[1])
    step = max(1, (1 << 21) // (4 * width * x.shape[2]))
    for start in range(0, height, step):
        rows = slice(start, start + step)
        band = x[top[rows]]
        band += (x[bottom[rows]] - band) * fy[rows, None, None]
        cols = band[:, left]
        cols += (band[:, right] - cols) * fx[:, None]
        yield rows, cols


WINDOW_STRIDE = 2 / 3  # of the window, between sliding windows (HRNet's test stride)


def window_starts(length: int, size: int) -> list[int]:
    """Window starts covering [0, length) with windows of `size` every 2/3 of it; the last
    window ends at the edge."""
    stride = max(1, math.ceil(size * WINDOW_STRIDE))
    steps = max(0, math.ceil((length - size) / stride))
    return sorted({min(i * stride, length - size) for i in range(steps + 1)})


@dataclasses.dataclass(frozen=True)
class Windows:
    """Sliding windows of `size` (height, width), every 2/3 of it, each padded at the
    bottom and right to `fixed` (a fixed-size model's input size) or else to a `multiple`
    (what a free-size model takes); their logits are cropped back."""

    size: tuple[int, int]
    multiple: int = 1
    fixed: tuple[int, int] | None = None


def tiled_bands(run, image: np.ndarray, windows: Windows):
    """Yields (rows, logits): the logits (rows, w, classes) of the image (h, w, 3) at its
    own resolution, averaged over `windows` (mmsegmentation's "slide" inference), a band of
    rows at a time, top to bottom. A band is given as soon as no later window covers it, so
    only a window's height of logits is ever held, whatever the image's size.

    `run` takes a batch (1, H, W, 3) and gives its logits. `image` is float, as the model
    takes it, or uint8 RGB, divided by 255 a window at a time (a large image's float copy
    would be 4 times its size)."""
    h, w = image.shape[:2]
    wh, ww = min(windows.size[0], h), min(windows.size[1], w)
    multiple = windows.multiple
    ph, pw = windows.fixed or (wh + -wh % multiple, ww + -ww % multiple)
    tops, lefts = window_starts(h, wh), window_starts(w, ww)
    # The windows form a grid: a pixel's window count is its row's times its column's.
    rows_seen, cols_seen = np.zeros(h, np.float32), np.zeros(w, np.float32)
    for y in tops:
        rows_seen[y : y + wh] += 1
    for x in lefts:
        cols_seen[x : x + ww] += 1
    scale = 1 / 255 if image.dtype == np.uint8 else 1
    held, held_top = None, 0  # summed logits of rows [held_top, held_top + len(held))
    for i, y in enumerate(tops):
        band = None
        for x in lefts:
            part = np.asarray(image[y : y + wh, x : x + ww], np.float32) * scale
            part = np.pad(part, ((0, ph - wh), (0, pw - ww), (0, 0)))
            logits = np.asarray(run(part[None]), np.float32)[0, :wh, :ww]
            if band is None:
                band = np.zeros((wh, w, logits.shape[-1]), np.float32)
            band[:, x : x + ww] += logits
        if held is None:
            held = band
        else:  # this window row overlaps the rows held from the one before
            grown = np.zeros((y + wh - held_top, w, band.shape[-1]), np.float32)
            grown[: len(held)] = held
            grown[y - held_top :] += band
            held = grown
        done = (tops[i + 1] if i + 1 < len(tops) else h) - held_top  # no later window's
        rows = slice(held_top, held_top + done)
        yield rows, held[:done] / (rows_seen[rows, None, None] * cols_seen[:, None])
        held, held_top = held[done:], held_top + done


def tiled_prediction(run, image: np.ndarray, windows: Windows, labels: bool = False) -> np.ndarray:
    """The logits (h, w, classes) of `tiled_bands`, whole; with `labels`, only their
    arg-max (h, w), taken band by band: an aerial image's labels without its logits (80
    megapixels of 19 classes would hold 6 GB of them), uint8 for up to 256 classes, int32
    beyond, as `resized_labels`."""
    out = None
    for rows, logits in tiled_bands(run, image, windows):
        part = logits.argmax(-1) if labels else logits
        if out is None:
            dtype = (np.uint8 if logits.shape[-1] <= 256 else np.int32) if labels else np.float32
            out = np.empty((image.shape[0], *part.shape[1:]), dtype)
        out[rows] = part
    return out


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """`tf.image.resize(x, (height, width))` for float (H, W, C) arrays: bilinear with half
    pixel centres, no antialiasing. Returns x itself when it has that size."""
    x = np.asarray(x, np.float32)
    if x.shape[:2] == (height, width):
        return x
    out = np.empty((height, width, x.shape[2]), np.float32)
    for rows, band in _bilinear_bands(x, height, width):
        out[rows] = band
    return out


def resized_labels(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """`resize_bilinear(logits, height, width).argmax(-1)`, the same values, without the
    resized logits: uint8 for up to 256 classes (as the palette PNGs hold them), int32
    beyond. A 12-megapixel photo's resized logits would be 0.9 GB of float32 at 19
    classes; here only a band of rows exists at a time."""
    logits = np.asarray(logits, np.float32)
    dtype = np.uint8 if logits.shape[-1] <= 256 else np.int32
    if logits.shape[:2] == (height, width):
        return logits.argmax(-1).astype(dtype)
    labels = np.empty((height, width), dtype)
    for rows, band in _bilinear_bands(logits, height, width):
        labels[rows] = band.argmax(-1)
    return labels


# ----------------------------------------------------------------------------- model


def quantize_input(details: dict, x: np.ndarray) -> np.ndarray:
    """`x` (float, the model's [0, 1] input) in the dtype of the tensor `details` describes:
    unchanged for a float tensor, quantised with its stored scale and zero point for an
    integer one (an `int8_io` file)."""
    dtype = details["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(x, dtype)
    scale, zero = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize_output(details: dict, y: np.ndarray) -> np.ndarray:
    """Float values of an output tensor (integer outputs through their scale and zero point)."""
    if not np.issubdtype(details["dtype"], np.integer):
        return y
    scale, zero = details["quantization"]
    return (y.astype(np.float32) - zero) * scale


def interpreter(path: str, threads: int = 2, xnnpack: bool = True):
    """A LiteRT interpreter of `path` with its tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        model = Interpreter(
            model_path=path, num_threads=threads, experimental_op_resolver_type=resolver
        )
        model.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise UsageError(f"{path} could not be opened as a TFLite model ({e})") from None
    return model


class Segmenter:
    """Float logits (h, w, classes) of uint8 RGB images from a kseg `.tflite` file (one
    image input in [0, 1], one logits output; fixed size): at the file's size
    (`model_logits`) or resized to each image's (`logits`)."""

    def __init__(self, path: str, threads: int = 2):
        self.interpreter = interpreter(path, threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_size = tuple(int(v) for v in self.input["shape"][1:3])
        self.num_classes = int(self.output["shape"][-1])
        self.name = f"tflite {os.path.basename(path)}"

    def run(self, images: np.ndarray) -> np.ndarray:
        """Logits of float images (N, h, w, 3) in [0, 1] at the file's input size."""
        outs = []
        for x in images:
            self.interpreter.set_tensor(self.input["index"], quantize_input(self.input, x[None]))
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self.output["index"])
            outs.append(dequantize_output(self.output, raw).astype(np.float32))
        return np.concatenate(outs)

    def model_logits(self, image: np.ndarray) -> np.ndarray:
        """The logits of one uint8 image resized to the file's input size."""
        height, width = self.input_size
        x = resize_bilinear(np.asarray(image, np.float32) / 255.0, height, width)
        return self.run(x[None])[0]

    def logits(self, image: np.ndarray) -> np.ndarray:
        return resize_bilinear(self.model_logits(image), *image.shape[:2])


# ----------------------------------------------------------------------------- outputs


def label_colormap(n: int = 256) -> np.ndarray:
    """uint8[n, 3]: the PASCAL VOC label colours (imgviz's `label_colormap`)."""
    colours = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = r, g, b
    return colours


# An export folder's class names with their colours (`name R G B`), beside its model files.
BUNDLE_CLASSES = "classes.txt"


def bundled_palette(model_path: str, num_classes: int) -> tuple[np.ndarray, str] | None:
    """(colours, path) of the `classes.txt` beside a model file (as kseg.export writes it
    into an export folder), or None when there is none, or it is unreadable or names
    another number of classes than the model's."""
    path = os.path.join(os.path.dirname(os.path.normpath(model_path)), BUNDLE_CLASSES)
    if not os.path.isfile(path):
        return None
    try:
        return read_palette(path, num_classes), path
    except UsageError:
        return None


def default_palette(num_classes: int) -> np.ndarray:
    """uint8[256, 3]: Cityscapes' colours for 19 classes, the VOC label colours else."""
    palette = label_colormap()
    if num_classes == 19:
        palette[:19] = CITYSCAPES_COLOURS
    return palette


def read_palette(path: str, num_classes: int | None = None) -> np.ndarray:
    """uint8[256, 3] from a `classes.txt` (`name R G B` lines; a bare `name` keeps the VOC
    colour of its index + 1, as kseg's folder datasets do) or a labelling tool's
    `labelmap.txt` (`name:R,G,B:parts:actions` lines; without colours, the VOC colour of
    its index, as the tools paint masks), or labelme's `labels.txt`. A file naming other
    than `num_classes` classes (the model's) is a `UsageError`."""
    palette = np.zeros((256, 3), np.uint8)
    voc = label_colormap()
    try:
        lines = [line.strip() for line in open(path, encoding="utf-8-sig")]
    except OSError as e:
        raise UsageError(f"{path}: unreadable classes file ({e})") from None
    # labelme's labels.txt starts with a line `__ignore__`, which names no class.
    entries = [line for line in lines if line and not line.startswith("#") and line != "__ignore__"]
    labelmap = any(":" in line for line in entries)
    for i, line in enumerate(entries):
        parts = line.split(":")[1].split(",") if labelmap else line.split()[1:]
        try:
            colour = [int(v) for v in parts if v.strip()]
            if len(colour) not in (0, 3) or not all(0 <= v <= 255 for v in colour):
                raise ValueError
        except (ValueError, IndexError):
            form = "`name:R,G,B:parts:actions`" if labelmap else "`name` or `name R G B`"
            raise UsageError(f"{path}: expected {form} lines, got {line!r}") from None
        palette[i] = colour or voc[i if labelmap else i + 1]
    check_class_count(path, len(entries), num_classes, UsageError)
    return palette


def check_label_ids(num_classes: int, error=ValueError) -> None:
    """Raises `error` unless a model of `num_classes` can be written as Cityscapes labelIds
    (`--label-ids`): the 19 training ids map to them, another model's classes do not."""
    if num_classes != len(CITYSCAPES_LABEL_IDS):
        raise error(
            f"--label-ids writes Cityscapes' labelIds of its {len(CITYSCAPES_LABEL_IDS)} "
            f"training classes, and the model outputs {num_classes}: leave it out"
        )


def check_class_count(path: str, named: int, num_classes: int | None, error=ValueError):
    """Raises `error` when a classes file naming `named` classes is not for a model of
    `num_classes` (None: any)."""
    if num_classes is not None and named != num_classes:
        raise error(
            f"{path} names {named} classes, and the model outputs {num_classes}: give the "
            "classes file of the data it was trained on"
        )


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The image half-blended with the label colours, rounded down: in 16-bit integers a
    band of rows at a time, so a large image's blend costs its size in uint8 only."""
    out = np.empty(image.shape, np.uint8)
    step = max(1, (1 << 20) // max(1, image.shape[1]))
    for top in range(0, image.shape[0], step):
        rows = slice(top, top + step)
        out[rows] = (image[rows].astype(np.uint16) + palette[labels[rows]]) >> 1
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Cityscapes predictions as official labelIds (for the benchmark server)."""
    table = np.zeros(256, np.uint8)
    table[: len(CITYSCAPES_LABEL_IDS)] = CITYSCAPES_LABEL_IDS
    return table[train_ids]


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OutputFolder:
    """The output folder, which may hold files of its user's (a mask corrected by hand, a
    file an app reads): an output replaces a file there only if kseg wrote it and it is
    unchanged since. `RECORD` in the folder lists each output kseg wrote with its SHA-256,
    a JSON line a file. An output is written beside its target under a temporary name,
    recorded, then moved in, so an interrupted run leaves every file whole and known.

    `check(names)` before the work refuses (`error`, naming the files) to overwrite
    anything else; `writing(name)` gives the temporary path to write an output to;
    `close()` keeps one line of the record for each file this run wrote."""

    RECORD = ".kseg-predictions.jsonl"
    error = UsageError

    def __init__(self, folder: str):
        """Opens `folder`, made if missing; a file there, or a folder that cannot be made,
        is `error`."""
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise self.error(f"{folder} is a file, not a folder: give a folder for the outputs")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise self.error(f"{folder}: cannot make the output folder ({e.strerror})") from None
        self.folder = folder
        self.known: dict[str, set[str]] = {}  # file -> every SHA-256 kseg recorded for it
        self.written: dict[str, str] = {}  # file -> SHA-256, this run
        try:
            with open(os.path.join(folder, self.RECORD)) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self.known.setdefault(entry["file"], set()).add(entry["sha256"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line an interrupted run left half-written
        except FileNotFoundError:
            pass

    def check(self, names: list[str]) -> None:
        """Refuses when any of `names` (paths relative to the folder) exists there and is
        not as kseg wrote it."""
        theirs = []
        for name in names:
            path = os.path.join(self.folder, name)
            if os.path.isdir(path) or (
                os.path.lexists(path) and sha256(path) not in self.known.get(name, ())
            ):
                theirs.append(name)
        if theirs:
            listed = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if theirs[3:] else "")
            raise self.error(
                f"{self.folder} already holds {listed}, which kseg did not write (or which "
                "changed since it did, like a corrected mask); this run would overwrite "
                f"{'them' if theirs[1:] else 'it'}. Write to another --out, or move "
                f"{'them' if theirs[1:] else 'it'} away."
            )

    @contextlib.contextmanager
    def writing(self, name: str):
        """The path to write the output `name` to; on leaving the block without an error
        the output is recorded and moved into place, and in any case the temporary file is
        gone. The temporary name keeps the extension, which writers read the format from."""
        target = os.path.join(self.folder, name)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        partial = os.path.join(os.path.dirname(target), ".kseg-partial-" + os.path.basename(target))
        try:
            yield partial
            digest = sha256(partial)
            with open(os.path.join(self.folder, self.RECORD), "a") as f:
                f.write(json.dumps({"file": name, "sha256": digest}) + "\n")
            os.replace(partial, target)
            self.written[name] = digest
        finally:
            if os.path.lexists(partial):
                os.remove(partial)

    def close(self) -> None:
        """Rewrites the record with one line for each file this run wrote; the lines of
        other files stay as they are."""
        if not self.written:
            return
        lines = [(name, digest) for name, digests in self.known.items() if name not in self.written
                 for digest in sorted(digests)] + sorted(self.written.items())  # fmt: skip
        record = os.path.join(self.folder, self.RECORD)
        with open(record + ".new", "w") as f:
            f.writelines(json.dumps({"file": n, "sha256": d}) + "\n" for n, d in lines)
        os.replace(record + ".new", record)
        for name, digest in self.written.items():
            self.known[name] = {digest}
        self.written = {}


# JPEG's largest side (libjpeg's JPEG_MAX_DIMENSION): a wider aerial image's overlay is
# scaled down to it; its label maps keep the image's size.
JPEG_MAX_SIDE = 65500


class ImageWriter:
    """Writes the outputs of one image under `folder` (an `OutputFolder`), keeping the
    input's relative path.

    Args:
        folder: the output folder.
        palette: uint8[256, 3] label colours.
        label_ids: also write Cityscapes labelIds (`<stem>_labelIds.png`).
        probabilities: also write per-class probabilities (`<stem>_prob.npz`, float16).
    """

    output_folder = OutputFolder

    def __init__(self, folder, palette, label_ids=False, probabilities=False):
        self.folder, self.palette = folder, palette
        self.label_ids, self.probabilities = label_ids, probabilities
        self.outputs = self.output_folder(folder)

    def names(self, name: str, source: str | None = None) -> list[str]:
        """The files `write(name, ..., source)` writes, relative to the folder."""
        suffixes = ["_pred.png", "_overlay.jpg"]
        suffixes += ["_labelIds.png"] * self.label_ids + ["_prob.npz"] * self.probabilities
        suffixes += ["_pred.tif"] * bool(source and geotiff_tags(source))
        return [name + suffix for suffix in suffixes]

    def check(self, names: list[str], sources: list[str] | None = None) -> None:
        """Refuses, before any work, to overwrite a file of the user's with the outputs of
        `names` (of the image files `sources`) (`OutputFolder.check`)."""
        sources = sources or [None] * len(names)
        self.outputs.check(
            [file for n, s in zip(names, sources, strict=True) for file in self.names(n, s)]
        )

    def write(
        self, name: str, image: np.ndarray, prediction: np.ndarray, source: str | None = None
    ) -> None:
        """Writes `<name>_pred.png` and the rest; `name` is the output path below the
        folder without a suffix (`output_bases`). `prediction` is the label map (H, W) at
        the image's size, or logits (h, w, classes) at any size (the size the model ran
        at): they are resized to the image's (bilinear), and only the probabilities, when
        asked for, need them whole at that size. When `source`, the image's file, is a
        GeoTIFF, the label map is also written as `<name>_pred.tif` with its GeoTIFF tags,
        where GIS tools (GDAL, QGIS) place it over the image."""
        pred, overlaid, *more = self.names(name)
        if prediction.ndim == 2:  # labels
            if self.probabilities:
                raise ValueError("the probabilities are written from logits, not labels")
            labels = prediction
        elif self.probabilities:  # they need the resized logits whole
            full = resize_bilinear(prediction, *image.shape[:2])
            labels = full.argmax(-1)
        else:
            labels = resized_labels(prediction, *image.shape[:2])
        labels = labels.astype(np.uint8, copy=False)
        png = Image.fromarray(labels, mode="P")
        png.putpalette(self.palette.reshape(-1).tolist())
        with self.outputs.writing(pred) as path:
            png.save(path)
        with self.outputs.writing(overlaid) as path:
            preview = Image.fromarray(overlay(image, labels, self.palette))
            if max(preview.size) > JPEG_MAX_SIDE:  # a preview: scaled to what JPEG holds
                scale = JPEG_MAX_SIDE / max(preview.size)
                size = [max(1, int(side * scale)) for side in preview.size]
                preview = preview.resize(size, Image.Resampling.BOX)
            preview.save(path, quality=90)
        if self.label_ids:
            with self.outputs.writing(more.pop(0)) as path:
                Image.fromarray(train_ids_to_label_ids(labels)).save(path)
        if self.probabilities:
            with self.outputs.writing(more.pop(0)) as path:
                np.savez_compressed(path, probabilities=softmax(full).astype(np.float16))
        if geo := source and geotiff_tags(source):
            from PIL.TiffImagePlugin import ImageFileDirectory_v2

            tags = ImageFileDirectory_v2()
            for tag, value, kind in geo:
                tags[tag], tags.tagtype[tag] = value, kind
            with self.outputs.writing(f"{name}_pred.tif") as path:
                png.save(path, format="TIFF", tiffinfo=tags, compression="tiff_deflate")

    def close(self) -> None:
        self.outputs.close()


class Progress:
    """Progress on stderr (items and items/s) and a closing summary: one line redrawn in a
    terminal; into a file, where a redrawn line would pile up, a line at each tenth of the
    items (each 100 when their number is unknown)."""

    def __init__(self, total: int | None, what: str = "images", quiet: bool = False):
        self.total, self.what, self.quiet = total, what, quiet
        self.done, self.started = 0, time.perf_counter()
        self.redraw = sys.stderr.isatty()
        self.every = max(1, -(-total // 10)) if total else 100  # items between file lines

    def update(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self.quiet or (not self.redraw and before // self.every == self.done // self.every):
            return
        rate = throughput(self.done, time.perf_counter() - self.started, self.what)
        of = f"/{self.total}" if self.total else ""
        line = f"  {self.done}{of} {self.what}, {rate}"
        if self.redraw:
            print(f"\r{line}", end="", file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> tuple[int, float]:
        seconds = time.perf_counter() - self.started
        if not self.quiet and self.done and self.redraw:
            print(file=sys.stderr)
        return self.done, seconds


def throughput(n: int, seconds: float, what: str = "images") -> str:
    """The rate of `n` items (`what`, plural) in `seconds`: "12.5 images/s", or below one a
    second, "3.2 s an image"."""
    if n and seconds > n:
        return f"{seconds / n:.1f} s a{'n' * (what[0] in 'aeio')} {what[:-1]}"
    return f"{n / max(seconds, 1e-9):.1f} {what}/s"


# ----------------------------------------------------------------------------- benchmark


def _memory_mb() -> tuple[float, float]:
    """(resident, peak resident) MB of this process. Linux: VmRSS and VmHWM, which start
    afresh at exec (ru_maxrss would carry a parent's peak over); else ru_maxrss twice."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
    except (OSError, KeyError):
        import resource  # POSIX only: Windows has neither /proc nor this

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak /= 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB else
        return peak, peak


def measure(path: str, threads: int, xnnpack: bool, runs: int, warmup: int) -> dict:
    """One configuration, timed in this process: `invoke` alone on a random input already
    in the input tensor, as `benchmark_model` does."""
    import ai_edge_litert.interpreter  # noqa: F401  (its import is not the model's memory)

    baseline, _ = _memory_mb()
    start = time.perf_counter()
    model = interpreter(path, threads, xnnpack)
    details = model.get_input_details()[0]
    rng = np.random.default_rng(0)
    x = quantize_input(details, rng.random(details["shape"], np.float32))
    model.set_tensor(details["index"], x)
    init_ms = 1e3 * (time.perf_counter() - start)
    # What the interpreter runs, not what was asked: XNNPACK shows as DELEGATE nodes.
    delegated = any(op["op_name"] == "DELEGATE" for op in model._get_ops_details())
    for _ in range(warmup):
        model.invoke()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.invoke()
        times.append(1e3 * (time.perf_counter() - t))
    _, peak = _memory_mb()
    return {
        "threads": threads, "xnnpack": delegated, "init_ms": init_ms,
        "p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(np.mean(times)), "peak_mb": peak, "delta_mb": peak - baseline,
    }  # fmt: skip


def benchmark(
    path: str, threads: tuple[int, ...] = (1,), runs: int = 50, warmup: int = 5
) -> list[dict]:
    """`measure` of every thread count with XNNPACK on and off, each in a fresh process of
    this file (so that peak memory is the configuration's own)."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    results = []
    for n in threads:
        for xnnpack in (True, False):
            command = [
                sys.executable, os.path.abspath(__file__), path, "--measure",
                "--threads", str(n), "--runs", str(runs), "--warmup", str(warmup),
            ]  # fmt: skip
            if not xnnpack:
                command.append("--no-xnnpack")
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode == 2:  # the child's UsageError
                raise UsageError(done.stderr.strip().splitlines()[-1].removeprefix("error: "))
            if done.returncode:
                raise RuntimeError(f"benchmark process failed:\n{done.stderr}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def benchmark_table(results: list[dict]) -> str:
    head = (f"{'threads':>7s} {'XNNPACK':>7s} {'init ms':>8s} {'p50 ms':>8s} {'p90 ms':>8s} "
            f"{'mean ms':>8s} {'peak MB':>8s} {'delta MB':>8s}")  # fmt: skip
    rows = [
        f"{r['threads']:7d} {'on' if r['xnnpack'] else 'off':>7s} {r['init_ms']:8.1f} "
        f"{r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['mean_ms']:8.2f} {r['peak_mb']:8.1f} "
        f"{r['delta_mb']:8.1f}"
        for r in results
    ]
    return "\n".join([head, *rows])


# ----------------------------------------------------------------------------- command


def count(text: str, least: int = 1) -> int:
    """A command-line count: a whole number of at least `least`. Here for segment.py,
    which runs without kseg; kseg's commands take it through `kseg.recipes.config`'s
    `positive` and `non_negative`."""
    if not text.isdigit() or int(text) < least:
        message = f"expected a whole number of at least {least}, got {text!r}"
        raise argparse.ArgumentTypeError(message)
    return int(text)


def add_output_arguments(p: argparse.ArgumentParser, required_out: bool = False) -> None:
    """The options segment.py shares with `python -m kseg.predict` (one command line)."""
    p.add_argument("--out", required=required_out, help="output folder")
    p.add_argument("--batch-size", type=count, default=4, help="images per step")
    p.add_argument("--threads", type=count, default=2, help="LiteRT (and onnxruntime) threads")
    p.add_argument(
        "--classes",
        help="a classes.txt (`name R G B` lines) or labelmap.txt for the label colours "
        "(default: the classes.txt an export wrote beside the model, or with kseg.predict "
        "the colours of the data a run's .keras file trained on; else Cityscapes' for 19 "
        "classes, the VOC label colours for others)",
    )
    p.add_argument("--label-ids", action="store_true", help="also write Cityscapes labelIds")
    p.add_argument(
        "--probabilities", action="store_true", help="also write per-class probabilities (.npz)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave out unreadable images (named at the end) instead of stopping at the first",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segment.py", description="Segment images with a kseg .tflite file, or benchmark it."
    )
    p.add_argument("model", help="the .tflite file")
    p.add_argument("inputs", nargs="*", help="images, folders or globs")
    add_output_arguments(p)
    p.add_argument(
        "--tile",
        action="store_true",
        help="segment each image at its own resolution in overlapping windows of the file's "
        "input size, every 2/3 of a window, their logits averaged: for images much larger "
        "than the model's input (aerial, whole-slide)",
    )
    p.add_argument("--benchmark", action="store_true", help="time the model instead")
    p.add_argument("--runs", type=count, default=50, help="timed runs of --benchmark")
    p.add_argument(
        "--warmup",
        type=functools.partial(count, least=0),
        default=5,
        help="untimed runs before them",
    )
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-xnnpack", action="store_true", help=argparse.SUPPRESS)
    return p


def segment_files(
    paths: list[str], predict, writer, root_of, batch_size: int = 4, quiet: bool = False,
    read=read_image, skip_bad: bool = False,
) -> tuple[int, float]:  # fmt: skip
    """Reads (`read`), segments (`predict(images)`: their label maps, or their logits at
    any size, which `writer` resizes) and writes `paths` a batch at a time; returns
    (images segmented, seconds). Output names are relative to `root_of(path)`
    (`output_bases`); before any work, `writer.check` refuses to overwrite a file of the
    user's with them. An unreadable image (`read` raises `UsageError`) stops the run, or
    with `skip_bad` is left out and named on stderr at the end."""
    bases = output_bases(paths, root_of)
    writer.check(bases, paths)
    progress = Progress(len(paths), quiet=quiet)
    skipped = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        read_ones = []
        for path, base in zip(chunk, bases[start : start + batch_size], strict=True):
            try:
                read_ones.append((base, path, read(path)))
            except UsageError as e:
                if not skip_bad:
                    raise UsageError(f"{e}; --skip-bad-files segments the others") from None
                skipped.append(str(e))
        if read_ones:
            predictions = predict([image for _, _, image in read_ones])
            for (base, path, image), prediction in zip(read_ones, predictions, strict=True):
                writer.write(base, image, prediction, path)
        progress.update(len(chunk))
    done, seconds = progress.close()
    if skipped:
        plural = "s" * (len(skipped) != 1)
        print(f"Skipped {len(skipped)} unreadable image{plural}:", file=sys.stderr)
        for problem in skipped:
            print(f"  {problem}", file=sys.stderr)
    return done - len(skipped), seconds


def segment(args) -> tuple[int, float]:
    images, videos = expand_inputs(args.inputs, args.out)
    if videos:
        raise UsageError(
            f"{videos[0]}: segment.py reads images and folders; segment videos with "
            "`python -m kseg.predict` (PyAV)"
        )
    model = Segmenter(args.model, args.threads)
    classes = model.num_classes
    if args.classes:
        palette = read_palette(args.classes, classes)
    elif bundled := bundled_palette(args.model, classes):
        palette, path = bundled
        print(f"Colours of {path}, the classes of the export")
    else:
        palette = default_palette(classes)
    if args.label_ids:
        check_label_ids(classes, UsageError)
    writer = ImageWriter(args.out, palette, args.label_ids, args.probabilities)
    if not args.tile:
        predict = model.model_logits
    else:  # windows of the file's input size; only the probabilities need logits whole
        windows = Windows(model.input_size, fixed=model.input_size)
        labels = not args.probabilities
        predict = functools.partial(tiled_prediction, model.run, windows=windows, labels=labels)
    try:
        n, seconds = segment_files(
            images, lambda batch: [predict(image) for image in batch], writer,
            output_root(args.inputs), args.batch_size, args.quiet, skip_bad=args.skip_bad_files,
        )  # fmt: skip
    finally:
        writer.close()
    print(f"Segmented {n} image{'s' * (n != 1)} in {seconds:.1f} s "
          f"({throughput(n, seconds)}) with {model.name}; outputs in {args.out}")  # fmt: skip
    return n, seconds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.measure:
            result = measure(args.model, args.threads, not args.no_xnnpack, args.runs, args.warmup)
            print(json.dumps(result))
        elif args.benchmark:
            results = benchmark(args.model, (args.threads,), args.runs, args.warmup)
            print(f"{args.model}: {args.runs} runs after {args.warmup} warm-up runs")
            print(benchmark_table(results))
        else:
            if not args.inputs or not args.out:
                raise UsageError("give images or folders and --out DIR (or --benchmark)")
            segment(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
