"""Training crops a second from large images read whole, against the same images cut into
tiles by `python -m kseg.data.tile` (the peer is the whole images, measured in the same
run), and the tile command's own speed.

    .venv/bin/python bench/tile.py --images 4 --side 6000 --runs 3

The images are the demo's photos at `--side` x `--side` pixels (ISPRS Potsdam's
orthophotos are 6000x6000), stored as uncompressed TIFF as aerial data ships, with their
masks; both pipelines are kseg's training input (`kseg.data.segmentation_pipeline`:
random scale 0.5-2, `--crop` crops, flip, colour jitter) at `--batch` crops a batch.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from _cli import bench_parser
from PIL import Image


def as_tiff(root: str) -> None:
    """The JPEG photos under `root` rewritten as uncompressed TIFFs, as aerial data ships."""
    for folder, _, names in os.walk(os.path.join(root, "images")):
        for name in names:
            path = os.path.join(folder, name)
            with Image.open(path) as im:
                im.save(os.path.splitext(path)[0] + ".tif")
            os.remove(path)


def crops_per_second(root: str, args) -> float:
    """The median over `--runs` of crops a second, after two batches of start-up."""
    from kseg.data import FolderDataset, segmentation_pipeline

    dataset = FolderDataset(root)
    samples = dataset.samples("train")
    samples = samples * -(-(args.batches + 2) * args.batch // len(samples))  # enough crops
    rates = []
    for run in range(args.runs):
        ds = segmentation_pipeline(
            dataset, samples, args.batch, training=True, crop=(args.crop,) * 2, seed=run
        )
        batches = iter(ds)
        for _ in range(2):
            next(batches)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        rates.append(args.batches * args.batch / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = bench_parser(
        __doc__, images=4, side=6000, tile=1024, crop=512, batch=8, batches=10, runs=3
    )
    args = parser.parse_args()
    from kseg.data.demo_data import build_demo_folder
    from kseg.data.tile import tile_dataset

    with tempfile.TemporaryDirectory() as tmp:
        whole = os.path.join(tmp, "whole")
        build_demo_folder(whole, train=args.images, val=1, height=args.side, width=args.side)
        as_tiff(whole)
        start = time.perf_counter()
        counts = tile_dataset(whole, os.path.join(tmp, "tiles"), (args.tile,) * 2)
        tiling = time.perf_counter() - start
        pixels = (args.images + 1) * args.side**2
        rates = {
            "whole images": crops_per_second(whole, args),
            f"{args.tile}x{args.tile} tiles": crops_per_second(os.path.join(tmp, "tiles"), args),
        }
    print(
        f"{args.images} training images of {args.side}x{args.side} (uncompressed TIFF), "
        f"{args.crop}x{args.crop} crops in batches of {args.batch}, {os.cpu_count()} cores, "
        f"median of {args.runs} runs of {args.batches} batches"
    )
    print(f"{'training input from':28s} {'crops/s':>8s} {'x whole':>8s}")
    for name, rate in rates.items():
        print(f"{name:28s} {rate:8.1f} {rate / rates['whole images']:8.2f}")
    tiles = sum(c["tiles"] for c in counts.values())
    print(
        f"python -m kseg.data.tile: {args.images + 1} images ({pixels / 1e6:,.0f} megapixels) "
        f"-> {tiles} tiles in {tiling:.1f} s, {pixels / 1e6 / tiling:.0f} megapixels/s"
    )


if __name__ == "__main__":
    main()
