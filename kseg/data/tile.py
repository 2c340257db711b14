"""Large images (aerial, whole-slide) and their masks cut into tiles for training.

`python -m kseg.data.tile` writes the tiles in the folder layout of your own data:

    python -m kseg.data.tile DIR --out TILES [--size 1024] [--overlap 0]
    python -m kseg.recipes.custom train --data-dir TILES

Training decodes the whole image behind every crop it takes (`bench/tile.py` measures
what tiles save), evaluation runs the model on whole images, and the checks refuse an
image over Pillow's limit (179 megapixels). Tiles are what aerial benchmarks train on
(mmsegmentation cuts ISPRS Potsdam into 512x512 tiles); kseg's are cut from the pixels
and class indices training reads (`kseg.data.pipeline.make_decoder`: EXIF orientation,
16-bit TIFFs scaled to 8 bits, colour masks mapped to classes), so that TILES trains on
the same data.

DIR is anything `python -m kseg.recipes.custom` reads (your folder layout, a labelling
tool's VOC export, labelme's or a COCO export), up to `MAX_IMAGE_PIXELS` an image. Each
split (training, validation, and test where DIR has one) is cut apart, a held-out
validation split included, so that no image trains in one and validates in the other:

- training tiles are all `size` (an image smaller than it stays whole), `overlap` pixels
  shared by neighbours and the last row and column moved back to end at the border;
- validation (and test) tiles cover each image once, the last row and column smaller, so
  that scores over the tiles count every pixel of the images once;
- tiles whose mask is the ignore label (255) throughout are left out: they have nothing
  to learn or score.

Tiles are PNG (lossless: the pixels training reads), named after their image and their
corner, `NAME_y1024_x2048.png`, images in `TILES/images/{train,val,test}/` and masks
(palette PNGs of class indices) in `TILES/masks/{train,val,test}/`, with
TILES/classes.txt.
"""

from __future__ import annotations

import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from kseg.data.base import IGNORE_LABEL
from kseg.data.images import large_images
from kseg.errors import UserError
from kseg.predict.standalone import MAX_IMAGE_PIXELS

SPLITS = ("train", "val")  # and "test" where the data has one


def _splits(dataset) -> list[str]:
    """The splits to cut: training and validation, and a test split the data holds."""
    from kseg.data.errors import DatasetLayoutError

    if "test" not in dataset.splits:
        return list(SPLITS)
    try:
        dataset.samples("test", verify=False)
    except DatasetLayoutError:  # no test images
        return list(SPLITS)
    return [*SPLITS, "test"]


def tile_starts(length: int, size: int, overlap: int = 0, cover_once: bool = False) -> list[int]:
    """Where the tiles along a side of `length` pixels start. Tiles of `size` sharing
    `overlap` pixels, the last moved back to end at `length` (one tile from 0 when the side
    is no longer than `size`); with `cover_once`, tiles side by side, the last shorter."""
    if cover_once:
        return list(range(0, length, size))
    if length <= size:
        return [0]
    stride = size - overlap
    return sorted({*range(0, length - size, stride), length - size})


def _name(image: str, folder: str) -> str:
    """The name of `image` without its extension, relative to `folder` (subfolders kept)."""
    return os.path.splitext(os.path.relpath(image, folder))[0]


def _class_lines(dataset) -> list[str]:
    """TILES/classes.txt: the classes with the colours DIR gives them, unless those are
    all greys (which would make single-channel and palette masks read as grey levels)."""
    names = [name.replace(" ", "_") for name in dataset.class_names]
    colours = getattr(dataset, "mask_colours", None)
    if colours is None or (colours == colours[:, :1]).all():
        return names
    return [f"{name} {r} {g} {b}" for name, (r, g, b) in zip(names, colours, strict=True)]


def _mask_palette(dataset) -> list[int]:
    """The masks' PNG palette: each class's colour, the ignore label white."""
    palette = np.zeros((256, 3), np.uint8)
    palette[: dataset.num_classes] = dataset.palette[: dataset.num_classes]
    palette[IGNORE_LABEL] = 255
    return palette.ravel().tolist()


def tile_split(dataset, split: str, out: str, size: tuple[int, int], overlap: int) -> dict:
    """Cuts `split` of `dataset` into tiles under `out` (its images/ and masks/ folders).
    Returns {"images": n, "tiles": n, "unlabelled": n} (tiles left out)."""
    import tensorflow as tf

    from kseg.data.pipeline import make_decoder

    samples = dataset.samples(split, verify=False)
    for s in samples:  # before the checks, which would call it unreadable
        with large_images(None), Image.open(s.image) as im:  # its header only
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise UserError(
                    f"{s.image}: {im.width}x{im.height} is {im.width * im.height:,} pixels, "
                    f"over the limit of {MAX_IMAGE_PIXELS:,}; cut it into parts first, e.g. "
                    "with gdal_retile.py"
                )
    samples = dataset.verify(samples)
    decode = tf.function(make_decoder(dataset))  # its Python parts expect a graph
    folder = os.path.commonpath([os.path.dirname(s.image) for s in samples])
    palette = _mask_palette(dataset)
    counts = {"images": len(samples), "tiles": 0, "unlabelled": 0}
    cover_once = split != "train"
    writes = []  # (path, pixels, palette) of an image's tiles
    for s in samples:
        image, label = (t.numpy() for t in decode(tf.constant(s.image), tf.constant(s.label)))
        (height, width), name = label.shape, _name(s.image, folder)
        for y in tile_starts(height, size[0], overlap, cover_once):
            for x in tile_starts(width, size[1], overlap, cover_once):
                mask = label[y : y + size[0], x : x + size[1]]
                if (mask == IGNORE_LABEL).all():
                    counts["unlabelled"] += 1
                    continue
                tile = f"{name}_y{y}_x{x}.png"
                window = image[y : y + size[0], x : x + size[1]]
                writes.append((os.path.join(out, "images", split, tile), window, None))
                writes.append((os.path.join(out, "masks", split, tile), mask, palette))
                counts["tiles"] += 1
        with ThreadPoolExecutor(os.cpu_count()) as pool:  # Pillow encodes without the GIL
            list(pool.map(lambda job: _write_png(*job), writes))
        writes.clear()
    return counts


def _write_png(path: str, pixels: np.ndarray, palette: list[int] | None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    written = Image.fromarray(pixels)
    if palette is not None:
        written.putpalette(palette)
    # zlib's fastest level: photos' PNGs come out barely larger than at Pillow's default
    # level, several times faster (bench/RESULTS.md, tile)
    written.save(path, compress_level=1)


def tile_dataset(root: str, out: str, size: tuple[int, int], overlap: int = 0, **options):
    """Cuts the training, validation and test images of the data in `root` (any layout
    `kseg.data.FolderDataset` reads; `options` are its options, e.g. `mask_suffix`) into
    tiles in the folder `out`, which must not exist or be empty: written beside it first
    and renamed into place when whole. Returns {split: `tile_split`'s counts}."""
    from kseg.data.folder import FolderDataset

    if min(size) < 1 or not 0 <= overlap < min(size):
        raise UserError(f"tiles of {size[0]}x{size[1]} with an overlap of {overlap}: the "
                        "overlap must be at least 0 and less than the tile's sides")  # fmt: skip
    out = os.path.abspath(out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UserError(f"--out {out} exists and is not empty; kseg does not write into it")
    partial = f"{out}.partial-{os.getpid()}"
    try:
        with large_images():
            dataset = FolderDataset(root, **options)
            counts = {s: tile_split(dataset, s, partial, size, overlap) for s in _splits(dataset)}
        with open(os.path.join(partial, "classes.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{line}\n" for line in _class_lines(dataset)))
        if os.path.isdir(out):
            os.rmdir(out)  # empty, checked above
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return counts


def main(argv: list[str] | None = None) -> None:
    from kseg.errors import command_parser, run_command
    from kseg.recipes.config import non_negative, side_or_size

    p = command_parser("python -m kseg.data.tile", __doc__.splitlines()[0])
    p.add_argument(
        "data_dir", metavar="DIR", help="your data (what python -m kseg.recipes.custom reads)"
    )
    p.add_argument(
        "--out", metavar="TILES", required=True, help="the folder of tiles (new or empty)"
    )
    p.add_argument(
        "--size",
        metavar="HxW",
        type=side_or_size,
        default=(1024, 1024),
        help="tiles' HEIGHTxWIDTH, or N for NxN; twice the training crop lets its random "
        "scale of 0.5 still fill a crop",
    )
    p.add_argument(
        "--overlap",
        metavar="PIXELS",
        type=non_negative,
        default=0,
        help="pixels shared by neighbouring training tiles (validation tiles share none)",
    )
    p.add_argument("--mask-suffix", help="as python -m kseg.recipes.custom's")
    args = p.parse_args(argv)

    def run():
        options = {"mask_suffix": args.mask_suffix} if args.mask_suffix else {}
        counts = tile_dataset(args.data_dir, args.out, args.size, args.overlap, **options)
        for split, c in counts.items():
            left = f" ({c['unlabelled']} wholly unlabelled left out)" if c["unlabelled"] else ""
            print(f"{split}: {c['images']} image(s) -> {c['tiles']} tiles{left}")
        train = f"python -m kseg.recipes.custom train --data-dir {args.out}"
        print(f"Tiles of up to {args.size[0]}x{args.size[1]} in {args.out}; train on them: {train}")

    run_command(run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
