"""ContextNet cn14 inference at 1x1024x2048x3: kseg (Keras, compiled) against pytorchcv.

The peer (pytorchcv's ContextNet in torch eager mode and through onnxruntime) runs in
bench/.peer-venv in a child process of this run, with the same thread count. Prints
medians and the ratios kseg / peer (below 1.0: kseg is faster).

    python bench/contextnet_speed.py [--runs 5] [--threads 2]
"""

from __future__ import annotations

import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from _cli import bench_parser, forwarded  # noqa: E402
from _peer import run_peer  # noqa: E402

from kseg.models import ContextNet  # noqa: E402
from kseg.utils import count_params, measure_latency  # noqa: E402


def main() -> None:
    p = bench_parser(__doc__, height=1024, width=2048, runs=5, threads=2)
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    shape = (args.height, args.width, 3)
    model = ContextNet(num_classes=19, aux_head=False)
    kseg_s = measure_latency(model, shape, runs=args.runs)["median_s"]
    xla_s = measure_latency(model, shape, runs=args.runs, jit_compile=True)["median_s"]
    peer = run_peer("contextnet_torch.py", *forwarded(args, "height", "width", "runs", "threads"))

    print(
        f"ContextNet cn14, 1x{args.height}x{args.width}x3, {args.threads} threads, "
        f"median of {args.runs} runs, {platform.processor() or platform.machine()}"
    )
    print(f"{'implementation':44s} {'params':>9s} {'median s':>9s} {'kseg/peer':>10s}")
    rows = [
        ("kseg Keras (tf.function)", count_params(model), kseg_s, None),
        ("kseg Keras (tf.function, XLA)", count_params(model), xla_s, None),
        (f"pytorchcv torch {peer['torch']} eager", peer["params"], peer["torch_eager_s"], kseg_s),
        (
            f"pytorchcv onnxruntime {peer['onnxruntime']}",
            peer["params"],
            peer["onnxruntime_s"],
            kseg_s,
        ),
    ]
    for name, params, seconds, ours in rows:
        ratio = f"{ours / seconds:10.2f}" if ours else f"{'':10s}"
        print(f"{name:44s} {params:9,d} {seconds:9.3f} {ratio}")
    print(
        f"target kseg/torch-eager <= 1.0: {'met' if kseg_s <= peer['torch_eager_s'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
