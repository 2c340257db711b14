"""Is the input pipeline fast enough to keep ContextNet training busy?

Both measured in this run, on Cityscapes-sized PNGs (1024x2048, written by the demo
generator): images per second of the training pipeline (decode, random scale, crop,
flip, colour jitter, batch) against images per second of a ContextNet cn14 training step
(forward, both losses, backward, RMSprop update) on an in-memory batch of the same batch
size and crop. The ratio pipeline / step should be at least 2; a third line runs `fit`
on the pipeline itself, where the two share the CPU.

`--photos` measures your own data's case instead: 12-megapixel JPEG photos (the demo's
scenes at 3000x4000) in the folder layout, 512x512 crops by default (the custom recipe's).

    python bench/input_pipeline.py [--batch 2] [--crop 1024x2048] [--steps 4] [--threads 2]
    python bench/input_pipeline.py --photos [--batch 8]
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from _cli import bench_parser  # noqa: E402

from kseg.data import Cityscapes, FolderDataset, segmentation_pipeline  # noqa: E402
from kseg.data.demo_data import build_demo_cityscapes, build_demo_folder  # noqa: E402
from kseg.models import create_model  # noqa: E402
from kseg.train import compile_model, preset_for  # noqa: E402
from kseg.train.engine import with_targets  # noqa: E402


def rate(iterator, batch: int, steps: int) -> float:
    next(iterator)  # warm-up: tracing, first decode
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    p = bench_parser(__doc__, batch=2, steps=4, images=16, threads=2)
    p.add_argument("--crop", help="HEIGHTxWIDTH (default 1024x2048; 512x512 with --photos)")
    p.add_argument("--photos", action="store_true", help="12-megapixel JPEGs, your own data")
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    crop = args.crop or ("512x512" if args.photos else "1024x2048")
    crop = tuple(int(v) for v in crop.split("x"))
    source = "JPEG 3000x4000" if args.photos else "PNG 1024x2048"
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        if args.photos:
            data = FolderDataset(
                build_demo_folder(tmp, train=args.images, val=1, height=3000, width=4000)
            )
        else:
            root = build_demo_cityscapes(tmp, train=args.images, val=1, height=1024, width=2048)
            data = Cityscapes(root)
        samples = data.samples("train")
        ds = segmentation_pipeline(data, samples, args.batch, training=True, crop=crop, seed=0)
        pipeline = rate(iter(ds.repeat()), args.batch, args.steps * 3)

        classes = data.num_classes
        model = create_model("contextnet_cn14", num_classes=classes)
        compile_model(model, preset_for("contextnet_cn14"), classes, total_steps=1000)
        images, labels = next(iter(ds))
        targets = {"logits": labels, "aux_logits": labels}

        def steps_from_memory():
            while True:
                yield model.train_on_batch(images, targets)

        step = rate(steps_from_memory(), args.batch, args.steps)
        fit_iter = iter(with_targets(ds.repeat(), model))

        def steps_from_pipeline():
            while True:
                yield model.train_on_batch(*next(fit_iter))

        both = rate(steps_from_pipeline(), args.batch, args.steps)

    print(f"batch {args.batch}, crop {crop[0]}x{crop[1]}, {args.threads} threads, {source}")
    print(f"{'':44s} {'images/s':>9s}")
    print(f"{'input pipeline alone':44s} {pipeline:9.2f}")
    print(f"{'training step on an in-memory batch':44s} {step:9.2f}")
    print(f"{'training step fed by the pipeline':44s} {both:9.2f}")
    print(f"pipeline / training step: {pipeline / step:.1f} (target >= 2)")
    print(f"training slowed by the pipeline: {step / both:.2f}x")


if __name__ == "__main__":
    main()
