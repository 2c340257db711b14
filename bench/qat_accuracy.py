"""int8 accuracy: post-training quantisation against quantisation-aware training, on
held-out demo images, for ContextNet cn14 and its narrow cn14_160.

For each model: trains the demo run (`python -m kseg.recipes.cityscapes train --demo`)
unless `--runs` already holds it, then runs the recipe's `qat` command on it, which
fine-tunes with int8 simulated, converts with the learned ranges, and scores the float
model, its post-training int8 (calibrated on 16 training crops) and the QAT int8 files on
the demo's validation images in LiteRT. Prints one table; each row is read from the run's
`qat/export/qat_vs_ptq.txt`.

    python bench/qat_accuracy.py [--runs runs/bench-qat] [--qat-epochs 3]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from _cli import bench_parser

MODELS = ("contextnet_cn14", "contextnet_cn14_160")
VALIDATION_IMAGES = 24  # the demo set's validation split


def _recipe(*args: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "kseg.recipes.cityscapes", *args]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> None:
    p = bench_parser(__doc__)
    p.add_argument("--runs", default="runs/bench-qat", help="folder of the demo runs")
    p.add_argument("--qat-epochs", type=int, default=3, help="a tenth of the demo's 30")
    args = p.parse_args()
    rows = []
    for model in MODELS:
        out = os.path.join(args.runs, model)
        if not os.path.exists(os.path.join(out, "best.keras")):
            print(f"training the demo run of {model} in {out} ...", flush=True)
            _recipe("train", "--demo", "--model", model, "--out", out, "--verbose", "0")
        started = time.time()
        _recipe(
            "qat", "--data-dir", os.path.join(out, "demo-data"), "--model", model, "--out", out,
            "--epochs", str(args.qat_epochs),
            "--limit", str(VALIDATION_IMAGES), "--verbose", "0", "--no-tensorboard",
        )  # fmt: skip
        seconds = time.time() - started
        with open(os.path.join(out, "qat", "export", "qat_vs_ptq.txt")) as f:
            text = f.read()
        scores = dict(re.findall(r"^  (.+?)\s+(\d+\.\d\d)$", text, re.M))
        values = [float(v) for v in scores.values()]
        rows.append((model, *values, seconds))
        print(text.splitlines()[0].replace("mIoU", f"{model}: mIoU"), flush=True)
    print(
        "\n| model | float (Keras) | int8 PTQ | int8 QAT | int8_io QAT | QAT - PTQ | qat command |"
    )
    print("|---|---|---|---|---|---|---|")
    for model, fp32, ptq, qat, qat_io, seconds in rows:
        print(
            f"| {model} | {fp32:.2f} | {ptq:.2f} | {qat:.2f} | {qat_io:.2f} | "
            f"{qat - ptq:+.2f} | {seconds:.0f} s |"
        )


if __name__ == "__main__":
    main()
