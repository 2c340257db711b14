"""ContextNet cn14 on the edge runtime: TFLite fp32 and int8 against pytorchcv's ContextNet
through onnxruntime, and pruned against unpruned, all measured in this run.

kseg's model is exported with `kseg.export` (builtin ops only) and run by the ai-edge-litert
interpreter with its default XNNPACK delegate; the peer (pytorchcv ContextNet exported
with torch.onnx) runs in bench/.peer-venv in a child process, with the same thread count.
Prints medians and speed-ups peer / kseg (above 1.0: kseg is faster). The headline ratio
is best against best: each side in its fastest way of running (in place or with copies
for TFLite, IOBinding or `run()` for onnxruntime), whichever that is in this run.

    python bench/export_speed.py [--runs 5] [--threads 2]
"""

from __future__ import annotations

import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from _cli import bench_parser, forwarded  # noqa: E402
from _peer import run_peer  # noqa: E402

from kseg.export import export_saved_model, export_tflite, prune_filters, sample_images  # noqa: E402
from kseg.export.formats import file_size_mb  # noqa: E402
from kseg.export.runtimes import tflite_latency  # noqa: E402
from kseg.models import ContextNet  # noqa: E402
from kseg.utils import count_params  # noqa: E402

# speed-up over the onnxruntime peer (issue 5); int8_io is int8 with integer image and
# logits (no quantise / dequantise at the edges), the full-integer form an edge app runs
TARGETS = {"fp32": 1.0, "int8": 1.5, "int8_io": 1.5}


def _cpu_flags() -> str:
    """The x86 vector and int8 dot-product extensions of this CPU (int8 speed depends on
    them: without VNNI, XNNPACK's int8 kernels are slower than its fp32 ones)."""
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in wanted if f in flags) or "none of " + ",".join(wanted)


def _tflite(model, folder: str, mode: str, images: np.ndarray, threads: int, runs: int):
    """(seconds in place, seconds with numpy copies, MiB) of `model` as TFLite `mode`."""
    h, w = images.shape[1:3]
    saved = export_saved_model(model, os.path.join(folder, f"{model.name}_saved"), h, w, False)
    path = os.path.join(folder, f"{model.name}_{mode}.tflite")
    export_tflite(saved, path, mode, calibration=lambda: iter(images))
    in_place = tflite_latency(path, images[0], threads, runs)
    copies = tflite_latency(path, images[0], threads, runs, copies=True)
    return in_place, copies, file_size_mb(path)


def main() -> None:
    p = bench_parser(__doc__, height=1024, width=2048, runs=5, threads=2)
    args = p.parse_args()

    images = sample_images(args.height, args.width)  # calibration: the VOC photo, mirrored
    model = ContextNet(num_classes=19, aux_head=False)
    pruned = prune_filters(model, ratio=0.5, name="contextnet_cn14_pruned50")
    rows = []  # name, params, MiB, in place s, with copies s, mode
    with tempfile.TemporaryDirectory() as folder:
        for m in (model, pruned):
            for mode in TARGETS:
                in_place, copies, size = _tflite(m, folder, mode, images, args.threads, args.runs)
                rows.append(
                    (f"kseg {m.name} TFLite {mode}", count_params(m), size, in_place, copies, mode)
                )
    peer = run_peer("contextnet_torch.py", *forwarded(args, "height", "width", "runs", "threads"))
    bound, run = peer["onnxruntime_bound_s"], peer["onnxruntime_s"]
    peer_best = min(bound, run)
    peer_way = "IOBinding" if bound <= run else "run()"
    rows.append(
        (f"pytorchcv onnxruntime {peer['onnxruntime']}", peer["params"], None, bound, run, "")
    )

    print(
        f"ContextNet cn14, 1x{args.height}x{args.width}x3, {args.threads} threads, "
        f"median of {args.runs} runs, {platform.processor() or platform.machine()}, "
        f"CPU flags: {_cpu_flags()}"
    )
    print("in place: TFLite invoke on its own tensors / onnxruntime with IOBinding;")
    print("copies: image copied in and logits copied out through numpy / onnxruntime run()")
    header = (
        f"{'implementation':42s} {'params':>9s} {'MiB':>5s} {'in place s':>10s} {'copies s':>9s}"
    )
    print(f"{header} {'best/best':>9s}")
    for name, params, size, in_place, copies, _ in rows:
        mib = f"{size:5.2f}" if size else f"{'-':>5s}"
        line = f"{name:42s} {params:9,d} {mib} {in_place:10.3f} {copies:9.3f}"
        if name.startswith("kseg"):
            line += f" {peer_best / min(in_place, copies):9.2f}"
        print(line)
    print(f"best/best: the peer at its best, {peer_way} ({peer_best:.3f} s), over kseg at its best")
    unpruned = {mode: min(s, c) for _, _, _, s, c, mode in rows[: len(TARGETS)]}
    for mode, target in TARGETS.items():
        got = peer_best / unpruned[mode]
        verdict = "met" if got >= target else "NOT met"
        print(
            f"target cn14 TFLite {mode} speed-up over the peer >= {target} (best against "
            f"best): {got:.2f}, {verdict}"
        )
    fp32 = [s for _, _, _, s, _, mode in rows if mode == "fp32"]
    print(f"pruned 50% / unpruned, fp32 latency: {fp32[1] / fp32[0]:.2f}")


if __name__ == "__main__":
    main()
