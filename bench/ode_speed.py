"""kseg.ode dopri5 against torchdiffeq dopri5, and adjoint vs direct back-prop memory.

Part 1: the same derivative (GroupNorm-ReLU-Conv3x3 twice, 64 channels, GroupNorm of 32
groups) on a batch of 8 states of 32x32x64, same weights, rtol = atol = 1e-3: function
evaluations, forward time and forward+backward time (both sides train with the adjoint),
as ratios kseg / torchdiffeq; torchdiffeq's adjoint with its default error norm and with
`norm="seminorm"`, which kseg's adjoint uses (`kseg.ode.adjoint`).

Part 2: peak memory of one forward+backward, each configuration in a fresh process: the
adaptive dopri5 adjoint at tightening tolerances against direct back-propagation through
an rk4 grid of growing step count; the growth per extra function evaluation is the ratio
to compare (flat for the adjoint, the activations of every evaluation for back-prop).

    python bench/ode_speed.py [--runs 3] [--only speed|memory]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _cli import bench_parser  # noqa: E402
from _memory import peak_memory  # noqa: E402
from _peer import run_peer  # noqa: E402
from peers.timing import timed  # noqa: E402

from kseg.ode import odeint  # noqa: E402

C, HW, BATCH = 64, 32, 8


class Func(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.gn1 = keras.layers.GroupNormalization(32, epsilon=1e-5)
        self.gn2 = keras.layers.GroupNormalization(32, epsilon=1e-5)
        self.conv1 = keras.layers.Conv2D(C, 3, padding="same")
        self.conv2 = keras.layers.Conv2D(C, 3, padding="same")

    def build(self, shape):
        for layer in (self.gn1, self.gn2, self.conv1, self.conv2):
            layer.build(shape)

    def call(self, y):
        return self.conv2(tf.nn.relu(self.gn2(self.conv1(tf.nn.relu(self.gn1(y))))))


def make_func(seed: int = 0):
    func = Func()
    func.build((None, HW, HW, C))
    rng = np.random.default_rng(seed)
    for conv in (func.conv1, func.conv2):  # small weights keep the ODE non-stiff
        conv.kernel.assign(rng.normal(scale=0.03, size=conv.kernel.shape).astype("float32"))
        conv.bias.assign(rng.normal(scale=0.01, size=conv.bias.shape).astype("float32"))
    x = rng.normal(size=(BATCH, HW, HW, C)).astype("float32")
    return func, x


def speed(runs: int, tol: float) -> None:
    func, x = make_func()
    x = tf.constant(x)

    @tf.function
    def forward(x):
        return odeint(lambda t, y: func(y), x, [0.0, 1.0], rtol=tol, atol=tol, return_info=True)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            y = odeint(lambda t, y: func(y), x, [0.0, 1.0], rtol=tol, atol=tol)[-1]
            loss = tf.reduce_sum(y**2)
        return tape.gradient(loss, func.trainable_weights)

    states, info = forward(x)
    reference = odeint(lambda t, y: func(y), x, [0.0, 1.0], rtol=1e-7, atol=1e-7)[-1].numpy()
    fwd = timed(lambda: forward(x)[0].numpy(), runs)
    fwdbwd = timed(lambda: [g.numpy() for g in forward_backward(x)], runs)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights.npz")
        np.savez(
            path,
            x=x.numpy(),
            conv1_kernel=func.conv1.kernel.numpy(),
            conv1_bias=func.conv1.bias.numpy(),
            conv2_kernel=func.conv2.kernel.numpy(),
            conv2_bias=func.conv2.bias.numpy(),
        )
        common = (f"--weights={path}", f"--runs={runs}", f"--tol={tol}")
        peer = run_peer("ode_torchdiffeq.py", *common)
        semi = run_peer("ode_torchdiffeq.py", *common, "--seminorm")
        theirs = np.load(path.replace(".npz", "_torch_out.npy"))

    print(f"dopri5, rtol=atol={tol}, batch {BATCH} x {HW}x{HW}x{C}, median of {runs} runs")
    print(f"{'':28s} {'kseg':>9s} {'torchdiffeq':>12s} {'kseg/peer':>10s}")
    rows = [
        ("function evaluations", float(info.nfe), float(peer["nfe"])),
        ("forward s", fwd, peer["forward_s"]),
        ("forward+backward s", fwdbwd, peer["forward_backward_s"]),
        ("  peer with seminorm", fwdbwd, semi["forward_backward_s"]),
    ]
    for name, kseg_value, peer_value in rows:
        print(f"{name:28s} {kseg_value:9.3f} {peer_value:12.3f} {kseg_value / peer_value:10.2f}")
    ours = states[-1].numpy()
    print(
        f"max |y(1) - reference| (kseg dopri5 at rtol=atol=1e-7): "
        f"kseg {np.abs(ours - reference).max():.2e}, "
        f"torchdiffeq {np.abs(theirs - reference).max():.2e}; "
        f"max |y_kseg - y_torchdiffeq| {np.abs(ours - theirs).max():.2e}"
    )


def memory_child(method: str, setting: float) -> None:
    func, x = make_func()
    x = tf.constant(x)
    kwargs = (
        {"rtol": setting, "atol": setting, "max_num_steps": 100_000}
        if method == "dopri5"
        else {"options": {"steps": int(setting)}}
    )

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y, info = odeint(
                lambda t, y: func(y), x, [0.0, 1.0], method=method, return_info=True, **kwargs
            )
            loss = tf.reduce_sum(y[-1] ** 2)
        return tape.gradient(loss, func.trainable_weights), info.nfe

    concrete = step.get_concrete_function(x)
    peak = peak_memory(lambda: concrete(x))
    print(json.dumps({"nfe": int(peak.result[1]), "extra_mib": peak.extra_mib}))


MEMORY_CASES = {"dopri5": (1e-2, 1e-4, 1e-6), "rk4": (4, 16, 64)}


def memory() -> None:
    print("\npeak memory of one forward+backward: peak of live tensors during a call of the")
    print("traced step above those live before it (MiB, TF's allocator statistics), median of")
    print("3 calls, each case in a fresh process")
    print(f"{'gradient':34s} {'setting':>8s} {'nfe':>5s} {'MiB':>8s}")
    results = {}
    for method, settings in MEMORY_CASES.items():
        for setting in settings:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", method, str(setting)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[method, setting] = r
            label = "adjoint (dopri5, tol)" if method == "dopri5" else "direct (rk4, steps)"
            print(f"{label:34s} {setting:8g} {r['nfe']:5d} {r['extra_mib']:8.1f}")
    print(
        f"{'loosest to tightest':34s} {'nfe x':>8s} {'MiB x':>8s} {'MiB per extra evaluation':>26s}"
    )
    for method, settings in MEMORY_CASES.items():
        first, last = results[method, settings[0]], results[method, settings[-1]]
        grow = last["extra_mib"] - first["extra_mib"]
        print(
            f"{method:34s} {last['nfe'] / first['nfe']:8.1f} "
            f"{last['extra_mib'] / first['extra_mib']:8.2f} "
            f"{grow / (last['nfe'] - first['nfe']):26.2f}"
        )


def main() -> None:
    p = bench_parser(__doc__, runs=3, threads=2)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--memory-child", nargs=2, metavar=("METHOD", "SETTING"))
    p.add_argument("--only", choices=("speed", "memory"), help="one of the two tables")
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], float(args.memory_child[1]))
        return
    if args.only != "memory":
        speed(args.runs, args.tol)
    if args.only != "speed":
        memory()


if __name__ == "__main__":
    main()
