"""Start-up: the first training step, what a user waits for before training begins,
against the steady step. ContextNet cn14 through kseg's training loop (the preset's
compile, `kseg.train.engine.fit`; the first step counted from the call of `fit`) against
pytorchcv's ContextNet in torch eager mode (bench/.peer-venv), each in a fresh process,
same batch, size and threads. Each fresh process starts after `--settle` seconds of quiet,
and the two sides take turns at going first over `--repeats` repeats: on a virtual machine
a process reuses cheaply the pages that a process ending just before it freed, and pays
for fresh ones (seconds per GiB here) otherwise. Each first step is printed with the
kernel time in it and the memory the kernel gave it afresh (`peers/timing.py`).

Target (issue 25): kseg's first step within 2x the peer's first step. HRNetV2's and
SegNode's first steps are in bench/segnode_memory.py.

`--breakdown` prints, instead, where kseg's first step goes, measured in one fresh process
with Grappler set as kseg's `fit` sets it: building the metrics', losses' and optimizer's
state as `fit` does before tracing, tracing the forward pass alone, then the forward and
its gradient, then the whole training step (optimizer update and metrics included), each
traced anew (so each includes the one before), then the step's first and second runs; and,
in a second fresh process, the same state built by Keras' `_symbolic_build` (its symbolic
forward pass), then the training step run eagerly (no graph, as the peer's), first and
second. `--model` names another registered model for the breakdown (19 classes).

    python bench/startup.py [--batch 2] [--height 512] [--width 1024] [--threads 2]
        [--repeats 4] [--settle 20]
    python bench/startup.py --breakdown [--model hrnetv2_w48 --height 256 --width 512]
    python bench/startup.py --keras-rmsprop   # kseg with Keras' RMSprop in place of its own
    python bench/startup.py --breakdown --keras-l2   # the weight decay as Keras' L2 regulariser
    python bench/startup.py --imports

`--imports` times what every kseg process pays before its work, `import kseg`, in fresh
processes, with the time Python's cyclic collector took in it: importing kseg first (kseg
pauses the collector while TensorFlow and tfp import) against importing TensorFlow and
tfp first with the collector running, then kseg.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _cli import bench_parser, forwarded  # noqa: E402
from peers.timing import process_usage, usage_since  # noqa: E402

TARGET = 2.0  # kseg's first step / the peer's


def _compiled_model(args):
    """ContextNet cn14 compiled with its preset, TensorFlow on `args.threads` threads."""
    import tensorflow as tf

    from kseg.models import create_model
    from kseg.train import compile_model, preset_for

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.keras_rmsprop or args.keras_l2:
        import keras

        from kseg.train import presets

        if args.keras_rmsprop:  # the preset's settings on Keras' update, not the fused one
            presets.RMSprop = keras.optimizers.RMSprop
        if args.keras_l2:  # the coupled decay as Keras' L2 regulariser, not one L2Loss op
            presets.CoupledL2 = lambda weight_decay: keras.regularizers.L2(weight_decay / 2)
    model = create_model(args.model, num_classes=19)
    compile_model(model, preset_for(model.name), 19, total_steps=1000)
    return model


def child(args) -> None:
    """kseg's first and steady steps, in this fresh process; one JSON line."""
    import tempfile

    import keras
    import numpy as np
    import tensorflow as tf

    from kseg.train.engine import fit

    model = _compiled_model(args)
    rng = np.random.default_rng(0)
    images = rng.random((args.batch, args.height, args.width, 3), "float32")
    labels = rng.integers(0, 19, (args.batch, args.height, args.width)).astype("int32")
    ds = tf.data.Dataset.from_tensors((images, labels)).repeat(args.runs + 1)

    class Clock(keras.callbacks.Callback):
        """The first step from `fit`'s call to its end, with the kernel time and the
        memory faulted in during it; the others from begin to end."""

        def __init__(self):
            super().__init__()
            self.usage, self.begin, self.seconds = process_usage(), time.perf_counter(), []

        def on_train_batch_begin(self, batch, logs=None):
            if batch:
                self.begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self.begin)
            if not batch:
                self.usage = usage_since(self.usage)

    with tempfile.TemporaryDirectory() as folder:
        clock = Clock()
        fit(model, ds, None, 1, folder, tensorboard=False, precise_bn_batches=0, verbose=0,
            extra_callbacks=[clock])  # fmt: skip
    first, *steady = clock.seconds
    print(
        json.dumps(
            {
                "first_s": first,
                "steady_s": float(np.median(steady)),
                "first_kernel_s": clock.usage["kernel_s"],
                "first_faulted_mib": clock.usage["faulted_mib"],
            }
        )
    )


def _built_model_and_batch(args, keras_build: bool = False):
    """The compiled model with its variables built as kseg's fit builds them (by Keras'
    `_symbolic_build` with `keras_build`), one random batch (x, y), and the seconds the
    build took."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kseg.train.engine import _build_before_tracing

    model = _compiled_model(args)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch, args.height, args.width, 3), "float32"))
    labels = tf.constant(rng.integers(0, 19, (args.batch, args.height, args.width)), tf.int32)
    y = keras.tree.map_structure(lambda _: labels, model.output)  # a label for each output
    begin = time.perf_counter()
    if keras_build:
        model._symbolic_build(data_batch=(x, y))
    else:
        _build_before_tracing(model, tf.distribute.get_strategy(), (x, y))
    return model, x, y, time.perf_counter() - begin


def eager_child(args) -> None:
    """The training step run eagerly, first and second, in this fresh process."""
    import tensorflow as tf

    model, x, y, build_s = _built_model_and_batch(args, keras_build=True)
    seconds = {"keras_build_s": build_s}
    for run in ("first", "second"):
        begin = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), model.train_step((x, y)))
        seconds[f"eager_{run}_s"] = time.perf_counter() - begin
    print(json.dumps(seconds))


def breakdown_child(args) -> None:
    """The first step's parts, in this fresh process; one JSON line of seconds."""
    import tensorflow as tf

    from kseg.train.graph_optimization import graph_optimization

    model, x, y, build_s = _built_model_and_batch(args)

    def forward(x, y):
        return model(x, training=True)

    def gradient(x, y):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x, y, model(x, training=True), training=True)
        return tape.gradient(loss, model.trainable_variables)

    def step(x, y):
        return model.train_step((x, y))

    seconds = {"build_s": build_s}
    with graph_optimization("auto"):
        for name, fn in (("forward", forward), ("gradient", gradient), ("step", step)):
            begin = time.perf_counter()
            traced = tf.function(fn).get_concrete_function(x, y)
            seconds[f"trace_{name}_s"] = time.perf_counter() - begin
        seconds["step_ops"] = len(traced.graph.get_operations())
        for run in ("first", "second"):
            begin = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), traced(x, y))
            seconds[f"{run}_run_s"] = time.perf_counter() - begin
    print(json.dumps(seconds))


_IMPORT_CHILD = """
import gc, json, sys, time
spent = [0.0, 0.0]
def clock(phase, info):
    if phase == "start":
        spent[1] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - spent[1]
gc.callbacks.append(clock)
begin = time.perf_counter()
if sys.argv[1] == "tensorflow-first":
    import tensorflow, tensorflow_probability
import kseg
print(json.dumps({"import_s": time.perf_counter() - begin, "collector_s": spent[0]}))
"""


def print_imports(runs: int) -> None:
    """`import kseg` in fresh processes, the two orders alternated `runs` times."""
    import statistics

    orders = {"kseg first": "kseg-first", "TensorFlow and tfp first": "tensorflow-first"}
    seen = {name: [] for name in orders}
    for _ in range(runs):
        for name, order in orders.items():
            out = subprocess.run(
                [sys.executable, "-c", _IMPORT_CHILD, order],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            seen[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"import kseg in a fresh process, median of {runs}")
    print(f"{'order':28s} {'import s':>9s} {'collector s':>12s}")
    for name, rows in seen.items():
        total = statistics.median(r["import_s"] for r in rows)
        collector = statistics.median(r["collector_s"] for r in rows)
        print(f"{name:28s} {total:9.2f} {collector:12.2f}")


def main() -> None:
    p = bench_parser(__doc__, batch=2, height=512, width=1024, runs=3, threads=2)
    p.add_argument("--child", action="store_true")
    p.add_argument("--breakdown", action="store_true", help="where kseg's first step goes")
    p.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)  # a child's part
    p.add_argument("--keras-rmsprop", action="store_true", help="kseg with Keras' RMSprop update")
    p.add_argument("--keras-l2", action="store_true", help="the weight decay as Keras' L2")
    p.add_argument("--imports", action="store_true", help="what `import kseg` costs")
    p.add_argument("--model", default="contextnet_cn14", help="with --breakdown: the model")
    p.add_argument("--repeats", type=int, default=4, help="fresh processes of each side")
    p.add_argument(
        "--settle", type=float, default=20.0, help="seconds of quiet before each fresh process"
    )
    args = p.parse_args()
    if args.imports:
        print_imports(args.runs)
        return
    if args.child:
        (eager_child if args.eager else breakdown_child if args.breakdown else child)(args)
        return
    flags = forwarded(args, "batch", "height", "width", "runs", "threads")  # the peer's too
    child_flags = flags + (["--keras-rmsprop"] if args.keras_rmsprop else [])
    child_flags += ["--keras-l2"] if args.keras_l2 else []
    if args.breakdown:
        print_breakdown(args, child_flags + ["--model", args.model])
        return
    if args.model != "contextnet_cn14":
        p.error("the peer is ContextNet cn14; --model goes with --breakdown")
    from _peer import run_peer

    def ours():
        out = subprocess.run(
            [sys.executable, __file__, "--child", *child_flags],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    def peer():
        return run_peer("contextnet_train_torch.py", *flags)

    # Each side in the same state of the machine's memory: after `--settle` seconds of
    # quiet, and first in every other repeat (a process that starts right after another
    # one ends reuses the pages it freed, which are cheaper to touch; bench/RESULTS.md).
    runs = []
    for repeat in range(args.repeats):
        order = ("kseg", "peer") if repeat % 2 == 0 else ("peer", "kseg")
        result = {}
        for side in order:
            time.sleep(args.settle)
            result[side] = ours() if side == "kseg" else peer()
        runs.append(result)
    report(args, runs)


def report(args, runs: list[dict]) -> None:
    ours_name = "kseg, Keras' RMSprop" if args.keras_rmsprop else "kseg (kseg.train.engine.fit)"
    names = {"kseg": ours_name, "peer": f"pytorchcv torch {runs[0]['peer']['torch']} eager"}
    print(
        f"ContextNet cn14 training step, batch {args.batch}, {args.height}x{args.width}, "
        f"{args.threads} threads; first step in a fresh process after {args.settle} s of "
        f"quiet, each side first in every other repeat; steady median of {args.runs}"
    )
    print(
        f"{'repeat':>6s}  {'implementation':34s} {'first s':>8s} {'kernel s':>9s} "
        f"{'faulted MiB':>12s} {'steady s':>9s}"
    )
    for repeat, result in enumerate(runs, 1):
        for side, got in result.items():
            print(
                f"{repeat:6d}  {names[side]:34s} {got['first_s']:8.2f} "
                f"{got['first_kernel_s']:9.2f} {got['first_faulted_mib']:12.0f} "
                f"{got['steady_s']:9.2f}"
            )
    first = {side: statistics.median(r[side]["first_s"] for r in runs) for side in names}
    ratio = first["kseg"] / first["peer"]
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"median first step: kseg {first['kseg']:.3f} s, peer {first['peer']:.3f} s; "
        f"target kseg first step <= {TARGET} x the peer's: {ratio:.3f}, {verdict}"
    )


def print_breakdown(args, flags: list[str]) -> None:
    s = {}
    for part in ("--breakdown", "--eager"):  # each in a fresh process
        out = subprocess.run(
            [sys.executable, __file__, "--child", part, *flags],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        s.update(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"{args.model} first training step in a fresh process, batch {args.batch}, "
        f"{args.height}x{args.width}, {args.threads} threads, Grappler as kseg's fit sets it, "
        + ("Keras' RMSprop" if args.keras_rmsprop else "the preset's optimizer, kseg's update")
        + (", Keras' L2" if args.keras_l2 else "")
    )
    rows = [
        ("build before tracing, as fit does", s["build_s"]),
        ("the same by Keras' _symbolic_build", s["keras_build_s"]),
        ("trace: the forward", s["trace_forward_s"]),
        ("trace: the forward and its gradient", s["trace_gradient_s"]),
        ("trace: the whole step", s["trace_step_s"]),
        ("first run of the traced step", s["first_run_s"]),
        ("second run", s["second_run_s"]),
        ("eager step (no graph), first", s["eager_first_s"]),
        ("eager step, second", s["eager_second_s"]),
    ]
    for name, value in rows:
        print(f"{name:40s} {value:6.2f} s")
    print(f"{'ops in the traced step':40s} {s['step_ops']:6d}")


if __name__ == "__main__":
    main()
