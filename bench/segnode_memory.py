"""SegNode's memory and time claims (Khoshsirat & Kambhamettu, Table 2): peak memory and
time of one training step and of one test image for HRNetV2-W48, the Baseline and SegNode,
measured in this run, each model in its own process; ratios against HRNetV2.

The paper (V100, CamVid 480x360): SegNode needs 57% less training memory than HRNetV2 at
batch 24 and 42% less test memory, and takes 1.9x its training time per epoch (34 s against
18 s, each at its largest batch: 62 and 24 images) and 2.4x its time per test image. An
epoch is the same images for both, so 1.9x is per training image; here both train on the
same batch. Targets here, for SegNode as it ships (rk4 on two steps, trained by the
adjoint on that grid, `kseg.ode.grid_adjoint`): training memory <= 0.43x HRNetV2's,
training step <= 1.9x, test image <= 2.4x; the first call (tracing, graph optimisation,
one run; what a user waits for before training starts) within 2x the steady call plus
20 s. Also, in the same run, other solver settings (their ratios printed beside the
targets):
- SegNode on dopri5 at rtol = atol = 1e-3 with kseg's adjoint (`kseg.ode.adjoint`);
- the same differentiated by checkpoints of its accepted steps (`gradient="aca"`,
  `kseg.ode.aca`), and by those checkpoints back-propagated one stage at a time
  (`gradient="aca_stagewise"`);
- the same differentiated by tfp's own adjoint;
- dopri5 trying a first step of 0.5 instead of Hairer's rule's
  (`SolverConfig(first_step=0.5)`);
- SegNode on `--ode-steps` rk4 steps back-propagated directly;
- SegNode on two rk4 steps differentiated one evaluation at a time
  (`gradient="checkpoint"`, `kseg.ode.checkpoint`): the gradients of back-propagation
  through the steps, where the default's are the ODE's;
- SegNode with one Euler step back-propagated directly: one evaluation of the ODE function
  and its gradient, the least any adjoint can need (its floor).

Training steps run as kseg's training does (`fit`): the preset's optimizer
(`kseg.train.optimizers`, each weight's update one fused op; `--optimizers keras` takes
Keras' own update instead), built before the step is traced, and TensorFlow's graph
optimiser off on a machine without a GPU
(`kseg.train.graph_optimization`); test images with the optimiser on, as `evaluate` and
`predict` run them. Each training call starts from the same weights and optimizer state
(restored, untimed, before it), so that every call solves the given model's ODE.

Memory is measured twice. The allocator's statistics (`_memory.peak_memory`): "step" is
the peak of its chunks in use during the call above those in use before it (activations,
gradients, solver buffers; not the weights and optimizer state, which exist before the
call), "total" the peak including them; median of `--runs` calls. And the live tensors'
own bytes (`_memory.tensor_peak`, one more call under the profiler), the same peak
without the unused tails of the chunks that TensorFlow's BFC allocator hands out whole:
what the model holds, and what the memory target is judged on. The tails depend on the
holes that the process's earlier allocations left (bench/RESULTS.md: 27-85 MiB of
SegNode's training peak, 6-9 of HRNetV2's); both ratios are printed. The peaks move by
tens of MiB from one process to the next with the order in which TensorFlow's threads
run independent ops: `--repeats` runs each case in that many fresh processes and reports
the medians, and the training memory's range across them.

A second table says where SegNode's time goes: the forward and backward evaluations of
the ODE function (accepted and rejected steps), the cost of one evaluation of the function
run alone (its two HRNet modules as a plain Keras model: forward in inference mode for the
test image, forward and forward-with-VJP in training mode for the training step), and the
share of the step those evaluations account for.

    python bench/segnode_memory.py [--batch 2] [--height 256] [--width 512] [--runs 2]
        [--optimizers kseg|keras] [--repeats 1]
        [--segnode-weights runs/segnode-demo/best.keras --data runs/segnode-demo/demo-data]

The paper's ratios are those of trained networks, and an adaptive solve's evaluations
depend on the weights: `--segnode-weights` gives the SegNode cases a trained model's
weights and `--data` real images and labels (resized), e.g. those of a SegNode demo run
(`python -m kseg.recipes.cityscapes train --demo --model segnode --out runs/segnode-demo
--epochs 3 --steps-per-epoch 6 --batch-size 4 --crop 128x256`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _cli import bench_parser, forwarded  # noqa: E402
from _memory import peak_memory, tensor_peak  # noqa: E402
from peers.timing import timed  # noqa: E402

from kseg.data import Cityscapes, segmentation_pipeline  # noqa: E402
from kseg.layers.recompute import call_functional, recomputing_norm_act  # noqa: E402
from kseg.models import create_model  # noqa: E402
from kseg.ode import ode_blocks  # noqa: E402
from kseg.train import preset_for, presets  # noqa: E402
from kseg.train.graph_optimization import graph_optimization  # noqa: E402
from kseg.utils import count_params  # noqa: E402

TARGET = 0.43  # SegNode training memory / HRNetV2's (the paper: 57% less)
# Table 2's times: "HRNetV2 requires 47% less training time and 59% less testing time".
TRAIN_TIME_TARGET, TEST_TIME_TARGET = 1.9, 2.4
PAPER = {  # Table 2: training GB at batch 24, test GB, test ms
    "hrnetv2_w48": (31.1, 1.2, 48),
    "residual_hrnet": (31.9, 1.2, 49),
    "segnode": (13.4, 0.7, 117),
}


UPDATES = {"kseg": "kseg's, one fused op a weight", "keras": "Keras' own update"}

# Flags the parent hands on to each child process.
FORWARDED = (
    "batch", "height", "width", "runs", "threads", "ode_steps", "graph_optimization", "optimizers"
)  # fmt: skip


# The SegNode cases' solver settings (`kseg.ode.SolverConfig` fields; None: SegNode's
# default, rk4 x 2 with the adjoint; a dict's missing fields are SolverConfig's: dopri5).
SEGNODE_SOLVERS = {
    "segnode": None,
    "segnode_dopri5": {},
    "segnode_aca": {"gradient": "aca"},
    "segnode_aca_stagewise": {"gradient": "aca_stagewise"},
    "segnode_first_step": {"first_step": 0.5},
    "segnode_tfp_adjoint": {"gradient": "tfp_adjoint"},
    "segnode_fixed": {"method": "rk4"},  # steps: --ode-steps
    "segnode_checkpoint": {"method": "rk4", "steps": 2, "gradient": "checkpoint"},
    "segnode_one_step": {"method": "euler", "steps": 1},
}


def _model(case: str, ode_steps: int) -> keras.Model:
    if case not in SEGNODE_SOLVERS:
        return create_model(case, num_classes=19)
    solver = SEGNODE_SOLVERS[case]
    if case == "segnode_fixed":
        solver = {**solver, "steps": ode_steps}
    return create_model("segnode", num_classes=19, solver=solver)


def _median_seconds(fn, calls: int = 3) -> float:
    """Median seconds of `fn` with its results read back (the first call traces)."""
    return timed(lambda: tf.nest.map_structure(lambda t: t.numpy(), fn()), calls)


def evaluation_cost(model, images, mode: str, recompute: bool = False) -> dict:
    """Seconds of one evaluation of the ODE function run alone at the block's input
    shapes: inference-mode forward ("eval") for a test image; training-mode forward
    ("eval") and forward with the VJP to the state and the parameters ("vjp") for a
    training step, its norm -> ReLU -> conv chains recomputed if `recompute`."""
    block = ode_blocks(model)[0]
    states = [tf.constant(s) for s in keras.Model(model.input, block.input)(images)]
    func, training = block.func, mode == "train"
    cost = {"eval": _median_seconds(tf.function(lambda: func(states, training=training)))}
    if training:

        @tf.function
        def vjp():
            with tf.GradientTape() as tape:
                tape.watch(states)
                f = (
                    call_functional(func, states, training=True)
                    if recompute
                    else func(states, training=True)
                )
            return tape.gradient(f, states + func.trainable_weights, output_gradients=f)

        cost["vjp"] = _median_seconds(vjp)
    return cost


def _batch(args, batch: int):
    """Random images and labels, or with `--data` the first validation images and labels
    of that Cityscapes-layout directory, resized to the benchmark's size."""
    size = (args.height, args.width)
    if not args.data:
        rng = np.random.default_rng(0)
        images = tf.constant(rng.random((batch, *size, 3), "float32"))
        return images, tf.constant(rng.integers(0, 19, (batch, *size)), tf.int32)
    data = Cityscapes(args.data)
    ds = segmentation_pipeline(data, data.samples("val")[:batch], batch, training=False)
    images, labels = next(iter(ds))
    images = tf.image.resize(images, size)
    labels = tf.image.resize(labels[..., None], size, method="nearest")[..., 0]
    return images, tf.cast(labels, tf.int32)


def child(case: str, mode: str, args) -> None:
    """Measures one case in this (fresh) process and prints one JSON line."""
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    model = _model(case, args.ode_steps)
    batch = args.batch if mode == "train" else 1
    images, labels = _batch(args, batch)
    if args.segnode_weights and case.startswith("segnode"):
        model.load_weights(args.segnode_weights)
        # The file's counters are its training run's last backward solve; a direct
        # gradient here runs none and would leave them standing.
        for block in ode_blocks(model):
            for counter in (block.backward_nfe, block.backward_accepted_steps,
                            block.backward_rejected_steps):  # fmt: skip
                counter.assign(0.0)
    if mode == "train":
        if args.optimizers == "keras":  # the presets' optimisers with Keras' own update
            for name in ("SGD", "Adam", "AdamW", "RMSprop"):
                setattr(presets, name, getattr(keras.optimizers, name))
        preset = preset_for("segnode" if case.startswith("segnode") else case)
        optimizer = preset.make_optimizer(total_steps=1000)
        # Built before tracing, as `fit` does: built inside the first call, its variables
        # would make TensorFlow trace the step twice.
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(images, training=True))
            grads = tape.gradient(loss, model.trainable_weights)
            optimizer.apply(grads, model.trainable_weights)
            return loss

        # Every call steps from the same weights: the counts are then those of the given
        # model, not of one that a step or two of SGD at the preset's rate moved (and made
        # stiffer; bench/RESULTS.md, segnode_memory).
        state = model.trainable_variables + optimizer.variables
        saved = [v.numpy() for v in state]

        def reset():
            for v, value in zip(state, saved, strict=True):
                v.assign(value)

    else:
        reset = None

        @tf.function
        def step():
            return model(images, training=False)

    # Training steps run with kseg's training setting (`fit` in kseg.train.engine), test
    # images with TensorFlow's default, as `evaluate` and `predict` do.
    setting = args.graph_optimization if mode == "train" else "on"
    with graph_optimization(setting), recomputing_norm_act(args.recompute_norm_act):
        peak = peak_memory(step, calls=args.runs, reset=reset)
        tensors = tensor_peak(step, reset=reset)
    result = {
        "mib": peak.extra_mib,
        "tensors": tensors,
        "total": peak.total_mib,
        "s": peak.seconds,
        "first": peak.first_seconds,
        "first_kernel": peak.first_usage["kernel_s"],
        "first_faulted_mib": peak.first_usage["faulted_mib"],
        "params": count_params(model),
    }
    blocks = ode_blocks(model)
    if blocks:
        b = blocks[0]
        result["forward"] = [int(w.numpy()) for w in (b.nfe, b.accepted_steps, b.rejected_steps)]
        backward = (b.backward_nfe, b.backward_accepted_steps, b.backward_rejected_steps)
        result["backward"] = [int(w.numpy()) for w in backward]
        if reset is not None:
            reset()
        result.update(evaluation_cost(model, images, mode, args.recompute_norm_act))
    print(json.dumps(result))


def main() -> None:
    p = bench_parser(__doc__, batch=2, height=256, width=512, runs=2, threads=2)
    p.add_argument("--ode-steps", type=int, default=4)
    p.add_argument(
        "--cases",
        default="hrnetv2_w48,residual_hrnet,segnode,segnode_dopri5,segnode_aca,"
        "segnode_aca_stagewise,segnode_first_step,segnode_tfp_adjoint,segnode_fixed,"
        "segnode_checkpoint,segnode_one_step",
        help="comma-separated subset (hrnetv2_w48 is the reference and always runs)",
    )
    p.add_argument(
        "--segnode-weights", help="a trained SegNode (.keras) whose weights the SegNode cases load"
    )
    p.add_argument(
        "--data", help="a Cityscapes-layout directory: its validation images instead of noise"
    )
    p.add_argument(
        "--graph-optimization",
        choices=("auto", "on", "off"),
        default="auto",
        help="Grappler on the training steps, as `--graph-optimization` of the recipes",
    )
    p.add_argument(
        "--optimizers",
        choices=("kseg", "keras"),
        default="kseg",
        help="the presets' optimisers as kseg trains with them, or with Keras' own update",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fresh processes per case and mode: the tables give their medians, and the "
        "training memory's range across them",
    )
    p.add_argument(
        "--recompute-norm-act",
        action="store_true",
        help="training steps with their batch norm -> ReLU -> conv chains recomputed in the "
        "backward pass (`kseg.layers.recompute`), as the recipes' --recompute-norm-act",
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
            flags = forwarded(args, *FORWARDED, "segnode_weights", "data")
            flags += ["--recompute-norm-act"] * args.recompute_norm_act
            command = [sys.executable, __file__, "--child", case, mode, *flags]
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run(command, check=True, capture_output=True, text=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            results[case, mode] = _medians(runs)
    report(args, cases, results)


def _medians(runs: list[dict]) -> dict:
    """One child's result from the results of several: the median of each number, the
    first run's counts (the same in every run), and the range of the memory."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            merged[key] = float(np.median([run[key] for run in runs]))
    for key in ("mib", "tensors"):
        merged[f"{key}_range"] = (min(run[key] for run in runs), max(run[key] for run in runs))
    return merged


def _range_ratios(train: dict, ref_train: dict, key: str = "mib") -> str:
    """The training memory's range over the processes (`key`: "mib", the allocator's;
    "tensors", the live tensors'), as ratios to the reference's median: "low-high"."""
    low, high = (m / ref_train[key] for m in train[f"{key}_range"])
    return f"{low:.2f}-{high:.2f}"


def _table(title: str, header: str, rows) -> None:
    print(f"\n{title}")
    print(header)
    for row in rows:
        print(row)


def report(args, cases: list[str], results: dict) -> None:
    """Prints the tables and the targets from the children's `results`."""
    inputs = f"images of {args.data}" if args.data else "random images"
    weights = f"SegNode weights of {args.segnode_weights}" if args.segnode_weights else "untrained"
    print(
        f"one training step (batch {args.batch}) and one test image, {args.height}x"
        f"{args.width}, 19 classes, {args.threads} threads, median of {args.runs} calls; "
        f"{inputs}, {weights}; graph optimisation of training steps: {args.graph_optimization}; "
        f"optimisers: {UPDATES[args.optimizers]}"
        + ("; norm-ReLU-conv chains recomputed" if args.recompute_norm_act else "")
        + (f"; medians over {args.repeats} processes each" if args.repeats > 1 else "")
    )
    ref_train, ref_test = results["hrnetv2_w48", "train"], results["hrnetv2_w48", "test"]
    labels = {
        "hrnetv2_w48": "HRNetV2-W48",
        "residual_hrnet": "Baseline (residual HRNet)",
        "segnode": "SegNode (rk4, 2 steps, adjoint)",
        "segnode_dopri5": "SegNode (dopri5, kseg's adjoint)",
        "segnode_aca": "SegNode (dopri5, aca)",
        "segnode_aca_stagewise": "SegNode (dopri5, aca stagewise)",
        "segnode_first_step": "SegNode (dopri5, first step 0.5)",
        "segnode_tfp_adjoint": "SegNode (dopri5, tfp's adjoint)",
        "segnode_fixed": f"SegNode (rk4, {args.ode_steps} steps, direct)",
        "segnode_checkpoint": "SegNode (rk4, 2 steps, checkpoint)",
        "segnode_one_step": "SegNode (1 Euler step, direct)",
    }

    def memory_row(case):
        train, test = results[case, "train"], results[case, "test"]
        cells = [
            f"{got['mib']:9.0f} {got['mib'] / ref['mib']:8.2f} {got['total']:7.0f} "
            f"{got['total'] / ref['total']:8.2f}"
            for got, ref in ((train, ref_train), (test, ref_test))
        ]
        return f"{labels[case]:36s} {train['params']:11,d} {cells[0]:>19s} {cells[1]}"

    _table(
        "memory, MiB: peak of the allocator's chunks in use (TF's BFC allocator) above those "
        "in use before the call (step) and in all (total)",
        f"{'model':36s} {'params':>11s} {'train step':>10s} {'x HRNet':>8s} {'total':>7s} "
        f"{'x HRNet':>8s} {'test step':>9s} {'x HRNet':>8s} {'total':>7s} {'x HRNet':>8s}",
        map(memory_row, cases),
    )

    def tensors_row(case):
        train, test = results[case, "train"], results[case, "test"]
        ratios = [
            got["tensors"] / ref["tensors"] for got, ref in ((train, ref_train), (test, ref_test))
        ]
        tails = train["mib"] - train["tensors"]
        cells = f"{train['tensors']:10.0f} {ratios[0]:8.2f} {tails:6.0f} {test['tensors']:9.0f}"
        return f"{labels[case]:36s} {cells} {ratios[1]:8.2f}"

    _table(
        "memory, MiB: peak of the live tensors' own bytes above those live before the call "
        "(one profiled call); tails: the step's chunks less its tensors",
        f"{'model':36s} {'train step':>10s} {'x HRNet':>8s} {'tails':>6s} {'test step':>9s} "
        f"{'x HRNet':>8s}",
        map(tensors_row, cases),
    )
    if args.repeats > 1:
        print(
            f"training step memory over the {args.repeats} processes, MiB (x HRNetV2's "
            "median): the allocator's chunks; the live tensors"
        )
        for case in cases:
            train = results[case, "train"]
            (low, high), (t_low, t_high) = train["mib_range"], train["tensors_range"]
            print(
                f"  {labels[case]:36s} {low:6.0f}-{high:<6.0f} "
                f"({_range_ratios(train, ref_train)}); {t_low:6.0f}-{t_high:<6.0f} "
                f"({_range_ratios(train, ref_train, 'tensors')})"
            )

    def time_row(case):
        train, test = results[case, "train"], results[case, "test"]
        return (
            f"{labels[case]:36s} {train['s']:7.2f} {train['s'] / ref_train['s']:8.2f} "
            f"{train['first']:7.1f} {2 * train['s'] + 20:7.1f} {train['first_kernel']:7.1f} "
            f"{train['first_faulted_mib']:12.0f} {test['s']:7.3f} {test['s'] / ref_test['s']:8.2f} "
            f"{test['first']:7.1f}"
        )

    _table(
        "time, s: steady call; first call in a fresh process (tracing, graph "
        "optimisation, one run), its budget (2 x steady + 20 s), the kernel's CPU time in "
        "it and the memory the kernel gave it afresh (pages faulted in, each mapped and "
        "zeroed)",
        f"{'model':36s} {'train':>7s} {'x HRNet':>8s} {'first':>7s} {'budget':>7s} "
        f"{'kernel':>7s} {'faulted MiB':>12s} {'test':>7s} {'x HRNet':>8s} {'first':>7s}",
        map(time_row, cases),
    )

    def counts(c):
        return f"{c[0]} ({c[1]}/{c[2]})" if c[1] >= 0 else f"{c[0]}"

    def evaluations_row(case):
        train, test = results[case, "train"], results[case, "test"]
        # Fixed grids and tfp's adjoint do not report a backward pass; their backward
        # evaluations are taken to be as many as the forward's.
        backward = train["backward"][0] or train["forward"][0]
        explained = train["forward"][0] * train["eval"] + backward * train["vjp"]
        return (
            f"{labels[case]:36s} {counts(train['forward']):>12s} "
            f"{counts(train['backward']):>12s} {train['eval']:6.3f} {train['vjp']:6.3f} "
            f"{explained / train['s']:6.2f} {counts(test['forward']):>12s} "
            f"{test['eval']:6.3f} {test['forward'][0] * test['eval'] / test['s']:6.2f}"
        )

    ode_cases = [c for c in cases if "forward" in results[c, "train"]]
    if ode_cases:
        _table(
            "SegNode's evaluations of its ODE function: evaluations (accepted/rejected "
            "steps); eval / vjp: seconds of one evaluation run alone, forward / forward with "
            "its VJP; share: evaluations x their cost / the measured call",
            f"{'model':36s} {'train fwd':>12s} {'train bwd':>12s} {'eval':>6s} {'vjp':>6s} "
            f"{'share':>6s} {'test':>12s} {'eval':>6s} {'share':>6s}",
            map(evaluations_row, ode_cases),
        )

    paper = PAPER["segnode"]
    hr = PAPER["hrnetv2_w48"]
    print(
        f"\npaper (Table 2): SegNode / HRNetV2 training memory {paper[0] / hr[0]:.2f}, "
        f"test memory {paper[1] / hr[1]:.2f}, training time {TRAIN_TIME_TARGET}, "
        f"test time {paper[2] / hr[2]:.2f}"
    )
    # The targets are SegNode's as it ships (its default solver); the other settings'
    # ratios are printed beside them.
    settings = ("segnode_dopri5", "segnode_aca", "segnode_aca_stagewise", "segnode_first_step",
                "segnode_checkpoint")  # fmt: skip
    for case in ("segnode", *settings):
        if (case, "train") not in results:
            continue
        train, test = results[case, "train"], results[case, "test"]
        checks = (
            ("training step memory", train["tensors"] / ref_train["tensors"], TARGET),
            ("training step time", train["s"] / ref_train["s"], TRAIN_TIME_TARGET),
            ("test image time", test["s"] / ref_test["s"], TEST_TIME_TARGET),
        )
        chunks = train["mib"] / ref_train["mib"]
        if args.repeats > 1:
            spread = (
                f" in live tensors (processes {_range_ratios(train, ref_train, 'tensors')}); "
                f"the allocator's chunks {chunks:.2f} (processes "
                f"{_range_ratios(train, ref_train)})"
            )
        else:
            spread = f" in live tensors; the allocator's chunks {chunks:.2f}"
        if case != "segnode":
            ratios = ", ".join(f"{what} {got:.2f}" for what, got, _ in checks)
            print(f"setting {labels[case]}, x HRNetV2's: {ratios}; memory{spread}")
            continue
        for what, got, target in checks:
            verdict = "met" if got <= target else "NOT met"
            extra = spread if what == "training step memory" else ""
            print(
                f"target {labels[case]} {what} <= {target} x HRNetV2's: {got:.2f}{extra}, {verdict}"
            )
    for case in ("hrnetv2_w48", "segnode", "segnode_dopri5", "segnode_checkpoint"):
        if (case, "train") in results:
            train = results[case, "train"]
            budget = 2 * train["s"] + 20
            verdict = "met" if train["first"] <= budget else "NOT met"
            print(
                f"target {labels[case]} first training step <= 2 x steady + 20 s = "
                f"{budget:.1f} s: {train['first']:.1f} s, {verdict}"
            )


if __name__ == "__main__":
    main()
