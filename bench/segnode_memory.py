"""SegNode's memory claim (Khoshsirat & Kambhamettu, Table 2): peak memory and time of one
training step and of one test image for HRNetV2-W48, the Baseline and SegNode, measured
in this run, each model in its own process; ratios against HRNetV2.

The paper (V100, CamVid 480x360, batch 24): SegNode needs 57% less training memory and
42% less test memory than HRNetV2, and is 2.4x slower per test image. Target here:
SegNode's training memory <= 0.43x HRNetV2's. Also, in the same run:
- SegNode differentiated by tfp's own adjoint instead of kseg's (`kseg.ode.adjoint`);
- SegNode on the fixed grid that edge export uses (rk4, `--ode-steps` steps,
  back-propagated directly rather than by the adjoint);
- SegNode with one Euler step back-propagated directly: one evaluation of the ODE function
  and its gradient, the least any adjoint can need (its floor).

Memory is TensorFlow's allocator statistics (`_memory.peak_memory`): "step" is the peak of
live tensors during the call above those live before it (activations, gradients, solver
buffers; not the weights and optimizer state, which exist before the call), "total" the
peak including them. Median of `--runs` calls.

    python bench/segnode_memory.py [--batch 2] [--height 256] [--width 512] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _memory import peak_memory  # noqa: E402

from kseg.models import create_model  # noqa: E402
from kseg.ode import ode_blocks  # noqa: E402
from kseg.train import preset_for  # noqa: E402
from kseg.utils import count_params  # noqa: E402

TARGET = 0.43  # SegNode training memory / HRNetV2's (the paper: 57% less)
PAPER = {  # Table 2: training GB at batch 24, test GB, test ms
    "hrnetv2_w48": (31.1, 1.2, 48),
    "residual_hrnet": (31.9, 1.2, 49),
    "segnode": (13.4, 0.7, 117),
}


def _model(case: str, ode_steps: int) -> keras.Model:
    if case == "segnode_fixed":
        return create_model("segnode", num_classes=19, method="rk4", steps=ode_steps)
    if case == "segnode_one_step":
        return create_model("segnode", num_classes=19, method="euler", steps=1)
    if case == "segnode_tfp_adjoint":
        from kseg.ode import solvers

        solvers.SOLVERS["dopri5"] = solvers.AdaptiveSolver(solvers.DormandPrince, adjoint="tfp")
        return create_model("segnode", num_classes=19)
    return create_model(case, num_classes=19)


def child(case: str, mode: str, args) -> None:
    """Measures one case in this (fresh) process and prints one JSON line."""
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    model = _model(case, args.ode_steps)
    rng = np.random.default_rng(0)
    batch = args.batch if mode == "train" else 1
    images = tf.constant(rng.random((batch, args.height, args.width, 3), "float32"))
    labels = tf.constant(rng.integers(0, 19, (batch, args.height, args.width)), tf.int32)
    if mode == "train":
        preset = preset_for("segnode" if case.startswith("segnode") else case)
        optimizer = preset.make_optimizer(total_steps=1000)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(images, training=True))
            grads = tape.gradient(loss, model.trainable_weights)
            optimizer.apply(grads, model.trainable_weights)
            return loss

    else:

        @tf.function
        def step():
            return model(images, training=False)

    peak = peak_memory(step, calls=args.runs)
    blocks = ode_blocks(model)
    nfe = int(blocks[0].nfe.numpy()) if blocks else 0
    print(
        json.dumps(
            {
                "mib": peak.extra_mib,
                "total": peak.total_mib,
                "s": peak.seconds,
                "nfe": nfe,
                "params": count_params(model),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ode-steps", type=int, default=4)
    p.add_argument(
        "--cases",
        default="hrnetv2_w48,residual_hrnet,segnode,segnode_tfp_adjoint,segnode_fixed,"
        "segnode_one_step",
        help="comma-separated subset (hrnetv2_w48 is the reference and always runs)",
    )
    p.add_argument("--child", nargs=2, metavar=("CASE", "MODE"))
    args = p.parse_args()
    if args.child:
        child(*args.child, args)
        return

    cases = ["hrnetv2_w48", *(c for c in args.cases.split(",") if c != "hrnetv2_w48")]
    results = {}
    for case in cases:
        for mode in ("train", "test"):
            command = [sys.executable, __file__, "--child", case, mode]
            for flag in ("batch", "height", "width", "runs", "threads", "ode_steps"):
                command.append(f"--{flag.replace('_', '-')}={getattr(args, flag)}")
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            results[case, mode] = json.loads(out.stdout.strip().splitlines()[-1])

    print(
        f"one training step (batch {args.batch}) and one test image, {args.height}x"
        f"{args.width}, 19 classes, {args.threads} threads, median of {args.runs} calls; MiB: "
        "peak of live tensors (TF allocator) above those live before the call (step) and "
        "in all (total)"
    )
    head = (
        f"{'model':36s} {'params':>11s} {'step MiB':>9s} {'x HRNet':>8s} {'total MiB':>9s} "
        f"{'x HRNet':>8s} {'train s':>8s}"
    )
    print(
        f"{head} {'test MiB':>9s} {'x HRNet':>8s} {'total MiB':>9s} {'x HRNet':>8s} "
        f"{'test s':>7s} {'x HRNet':>8s} {'nfe':>4s}"
    )
    ref_train, ref_test = results["hrnetv2_w48", "train"], results["hrnetv2_w48", "test"]
    labels = {
        "hrnetv2_w48": "HRNetV2-W48",
        "residual_hrnet": "Baseline (residual HRNet)",
        "segnode": "SegNode (dopri5, kseg's adjoint)",
        "segnode_tfp_adjoint": "SegNode (dopri5, tfp's adjoint)",
        "segnode_fixed": f"SegNode (rk4, {args.ode_steps} steps, direct)",
        "segnode_one_step": "SegNode (1 Euler step, direct)",
    }
    for case in cases:
        train, test = results[case, "train"], results[case, "test"]
        print(
            f"{labels[case]:36s} {train['params']:11,d} {train['mib']:9.0f} "
            f"{train['mib'] / ref_train['mib']:8.2f} {train['total']:9.0f} "
            f"{train['total'] / ref_train['total']:8.2f} {train['s']:8.2f} {test['mib']:9.0f} "
            f"{test['mib'] / ref_test['mib']:8.2f} {test['total']:9.0f} "
            f"{test['total'] / ref_test['total']:8.2f} {test['s']:7.3f} "
            f"{test['s'] / ref_test['s']:8.2f} {test['nfe']:4d}"
        )
    paper = PAPER["segnode"]
    hr = PAPER["hrnetv2_w48"]
    print(
        f"paper (Table 2): SegNode / HRNetV2 training memory {paper[0] / hr[0]:.2f}, "
        f"test memory {paper[1] / hr[1]:.2f}, test time {paper[2] / hr[2]:.2f}"
    )
    if ("segnode", "train") in results:
        got = results["segnode", "train"]["mib"] / ref_train["mib"]
        verdict = "met" if got <= TARGET else "NOT met"
        print(f"target SegNode training step memory <= {TARGET} x HRNetV2's: {got:.2f}, {verdict}")


if __name__ == "__main__":
    main()
