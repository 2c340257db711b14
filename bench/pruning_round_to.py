"""Pruning for int8 kernels: ContextNet cn14 pruned with channel counts rounded to
multiples of 8 (`python -m kseg.export --prune`'s default) against unrounded (`--round-to
1`), both measured in this run as TFLite fp32 and int8 in LiteRT with XNNPACK.

Channel counts that are not multiples of 8 leave SIMD lanes and XNNPACK's int8 blocks
partly empty. Prints parameters, file size and median latency of each, and the ratio
unrounded / rounded (above 1.0: rounding to 8 is faster).

    python bench/pruning_round_to.py [--ratio 0.4] [--runs 5] [--threads 2]
"""

from __future__ import annotations

import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _cli import bench_parser  # noqa: E402

from kseg.export import export_saved_model, export_tflite, prune_filters, sample_images  # noqa: E402
from kseg.export.formats import file_size_mb  # noqa: E402
from kseg.export.runtimes import tflite_latency  # noqa: E402
from kseg.models import ContextNet  # noqa: E402
from kseg.utils import count_params  # noqa: E402


def main() -> None:
    p = bench_parser(__doc__, height=1024, width=2048, runs=5, threads=2)
    p.add_argument("--ratio", type=float, default=0.4, help="fraction of filters removed")
    args = p.parse_args()

    images = sample_images(args.height, args.width)
    model = ContextNet(num_classes=19, aux_head=False)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for round_to in (1, 8):
            pruned = prune_filters(model, ratio=args.ratio, round_to=round_to)
            saved = export_saved_model(
                pruned, os.path.join(folder, f"r{round_to}"), args.height, args.width, False
            )
            odd = sum(
                1 for layer in pruned.layers if hasattr(layer, "filters") and layer.filters % 8
            )
            for mode in ("fp32", "int8"):
                path = os.path.join(folder, f"r{round_to}_{mode}.tflite")
                export_tflite(saved, path, mode, calibration=lambda: iter(images))
                seconds = tflite_latency(path, images[0], args.threads, args.runs)
                results[round_to, mode] = (count_params(pruned), file_size_mb(path), seconds, odd)

    print(
        f"ContextNet cn14 pruned {args.ratio:.0%}, 1x{args.height}x{args.width}x3, "
        f"{args.threads} threads, median of {args.runs} runs, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"{'round-to':>8s} {'mode':>5s} {'params':>9s} {'convs not /8':>12s} {'MiB':>5s} {'s':>7s}"
    )
    for (round_to, mode), (params, size, seconds, odd) in results.items():
        print(f"{round_to:8d} {mode:>5s} {params:9,d} {odd:12d} {size:5.2f} {seconds:7.3f}")
    for mode in ("fp32", "int8"):
        ratio = results[1, mode][2] / results[8, mode][2]
        print(f"{mode}: latency round-to 1 / round-to 8 = {ratio:.2f}")


if __name__ == "__main__":
    main()
