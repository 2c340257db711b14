"""Test-time solver settings of a trained SegNode (the paper's section 4.8: accuracy traded
for speed at test time, `ODEBlock.set_solver`): validation mIoU, function evaluations,
seconds per image and pixel agreement with the solve the model was trained with (its
file's solver, the first row), for dopri5 at torchdiffeq's default and looser tolerances
and other first steps, and for fixed grids, all in this run.

Needs a trained SegNode and its data, e.g. a SegNode demo run:

    python -m kseg.recipes.cityscapes train --demo --model segnode --out runs/segnode-demo \\
        --epochs 3 --steps-per-epoch 6 --batch-size 4 --crop 128x256
    python bench/segnode_solvers.py --checkpoint runs/segnode-demo/best.keras \\
        --data runs/segnode-demo/demo-data
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _cli import bench_parser  # noqa: E402

from kseg.data import Cityscapes, segmentation_pipeline  # noqa: E402
from kseg.ode import SolverConfig, ode_blocks  # noqa: E402
from kseg.ode.odeint import DEFAULT_STEPS  # noqa: E402
from kseg.train.metrics import mean_iou  # noqa: E402

SETTINGS = [  # (label, method, the other SolverConfig fields)
    ("dopri5 1e-3", "dopri5", {"rtol": 1e-3, "atol": 1e-3}),
    ("dopri5 1e-7/1e-9", "dopri5", {"rtol": 1e-7, "atol": 1e-9}),
    ("dopri5 1e-5", "dopri5", {"rtol": 1e-5, "atol": 1e-5}),
    ("dopri5 1e-3, first 0.5", "dopri5", {"rtol": 1e-3, "atol": 1e-3, "first_step": 0.5}),
    ("dopri5 1e-3, first 1", "dopri5", {"rtol": 1e-3, "atol": 1e-3, "first_step": 1.0}),
    ("dopri5 1e-2", "dopri5", {"rtol": 1e-2, "atol": 1e-2}),
    ("dopri5 1e-1", "dopri5", {"rtol": 1e-1, "atol": 1e-1}),
    ("rk4 x 4", "rk4", {"steps": 4}),
    ("rk4 x 2", "rk4", {"steps": 2}),
    ("rk4 x 1", "rk4", {"steps": 1}),
    ("midpoint x 2", "midpoint", {"steps": 2}),
    ("euler x 2", "euler", {"steps": 2}),
    ("euler x 1", "euler", {"steps": 1}),
]


def main() -> None:
    p = bench_parser(__doc__, threads=2)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="a Cityscapes-layout directory")
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    model = keras.models.load_model(args.checkpoint)
    (block,) = ode_blocks(model)
    data = Cityscapes(args.data)
    ds = segmentation_pipeline(data, data.samples("val"), 1, training=False, pad_multiple=32)
    batches = [(x, y) for x, y in ds]
    num_classes = model.num_classes

    print(
        f"{os.path.basename(args.checkpoint)}: {len(batches)} validation images of "
        f"{batches[0][0].shape[1]}x{batches[0][0].shape[2]}, {args.threads} threads"
    )
    print(
        f"{'setting':24s} {'mIoU':>6s} {'evals':>6s} {'s/image':>8s} {'x trained':>9s} "
        f"{'agreement':>9s}"
    )
    trained = block.solver
    grid = (
        f"{trained.method} {trained.rtol:.0e}".replace("e-0", "e-")
        if trained.adaptive
        else f"{trained.method} x {trained.steps or DEFAULT_STEPS}"
    )
    reference, default_s = None, None
    for label, solver in [(f"{grid} (as trained)", trained)] + [
        (label, SolverConfig(method, **kwargs)) for label, method, kwargs in SETTINGS
    ]:
        block.solver = solver
        predict = tf.function(lambda x: tf.argmax(model(x, training=False), -1))
        predict(batches[0][0])  # trace
        confusion = np.zeros((num_classes, num_classes), np.int64)
        predictions, seconds, evaluations = [], [], []
        for x, y in batches:
            start = time.perf_counter()
            pred = predict(x).numpy()
            seconds.append(time.perf_counter() - start)
            evaluations.append(int(block.nfe.numpy()))
            predictions.append(pred)
            y = y.numpy()
            valid = y < num_classes
            confusion += np.bincount(
                y[valid] * num_classes + pred[valid], minlength=num_classes**2
            ).reshape(num_classes, num_classes)
        per_image = float(np.median(seconds))
        if reference is None:
            reference, default_s = predictions, per_image
        agreement = np.mean([np.mean(a == b) for a, b in zip(predictions, reference, strict=True)])
        print(
            f"{label:24s} {100 * mean_iou(confusion):6.2f} "
            f"{np.mean(evaluations):6.1f} {per_image:8.3f} {per_image / default_s:9.2f} "
            f"{100 * agreement:8.2f}%"
        )


if __name__ == "__main__":
    main()
