"""PreciseBN on kseg's batch norms, inside an ODE block's derivative as well: the moving
statistics become the average over every call of every batch, against a NumPy replay
of the forward pass; training afterwards goes back to the momentum."""

import os

import keras
import numpy as np
import tensorflow as tf

from kseg.layers.norm import BatchNormalization
from kseg.ode import ODEBlock, SolverConfig
from kseg.train.precise_bn import recompute_batch_norm_statistics, training_forward

EPSILON, STEPS = 1e-3, 3  # Keras' default epsilon; Euler steps of the block on [0, 1]


def _stats(y):
    return y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))


def _replay(x):
    """Each batch norm's training calls in one forward pass: their (mean, biased variance)
    for the one before the block, and for the derivative's at each evaluation."""
    pre = _stats(x)
    y, inner = (x - pre[0]) / np.sqrt(pre[1] + EPSILON), []
    for _ in range(STEPS):
        inner.append(_stats(y))
        y = y + (y - inner[-1][0]) / np.sqrt(inner[-1][1] + EPSILON) / STEPS
    return [pre], inner


def test_precise_bn_averages_every_call_and_training_then_uses_the_momentum():
    inputs = keras.Input((4, 4, 2))
    pre = BatchNormalization(name="pre")
    inner = BatchNormalization(name="inner")
    block = ODEBlock(keras.Sequential([inner]), solver=SolverConfig("euler", steps=STEPS))
    model = keras.Model(inputs, block(pre(inputs)))
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (8, 4, 4, 2)).astype("float32") for _ in range(4)]
    model(batches[3], training=True)  # the derivative traced for training first

    forward = training_forward(model)
    for first in (0, 1):  # a second epoch's call reuses the traced forward
        used = recompute_batch_norm_statistics(model, iter(batches[first:]), 2, forward=forward)
        assert used == 2 and pre.momentum == inner.momentum == 0.99
        calls = [_replay(b) for b in batches[first : first + 2]]
        for layer, k in ((pre, 0), (inner, 1)):
            mean, var = np.mean([c for batch in calls for c in batch[k]], axis=0)
            np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-4)
    assert forward.experimental_get_tracing_count() == 1

    # Training again: every call of the derivative moves the statistics by the momentum.
    want = {layer: [layer.moving_mean.numpy(), layer.moving_variance.numpy()]
            for layer in (pre, inner)}  # fmt: skip
    for layer, calls in zip((pre, inner), _replay(batches[3]), strict=True):
        for mean, var in calls:
            want[layer] = [
                0.99 * w + 0.01 * s for w, s in zip(want[layer], (mean, var), strict=True)
            ]
    model(tf.constant(batches[3]), training=True)
    for layer in (pre, inner):
        np.testing.assert_allclose(layer.moving_mean.numpy(), want[layer][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), want[layer][1], rtol=1e-4)


_MIRRORED = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import os

import keras
from kseg.layers.norm import BatchNormalization
from kseg.ode import ODEBlock, SolverConfig
from kseg.train.precise_bn import recompute_batch_norm_statistics

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    inputs = keras.Input((4, 4, 2))
    pre, inner = BatchNormalization(name="pre"), BatchNormalization(name="inner")
    block = ODEBlock(keras.Sequential([inner]), solver=SolverConfig("euler", steps=%d))
    model = keras.Model(inputs, block(pre(inputs)))
images = np.load(%r)
data = tf.data.Dataset.from_tensor_slices(images).batch(16)
used = recompute_batch_norm_statistics(
    model, iter(strategy.experimental_distribute_dataset(data)), 2, strategy=strategy
)
print(json.dumps({"used": used, **{
    layer.name: [strategy.experimental_local_results(v.value)[i].numpy().tolist()
                 for v in (layer.moving_mean, layer.moving_variance) for i in (0, 1)]
    for layer in (pre, inner)
}}))
"""


def test_precise_bn_on_two_replicas_averages_both_replicas_calls(tmp_path):
    """Two logical CPUs (a process of their own), each running half of every batch
    through the ODE block: every replica ends with the average over both halves' calls.
    Reading a mirrored statistic gives the first replica's copy, which before held only
    the first half's."""
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, (32, 4, 4, 2)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED % (STEPS, str(tmp_path / "images.npy"))],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["used"] == 2
    calls = [_replay(images[i : i + 8]) for i in range(0, 32, 8)]  # the replicas' halves
    for name, k in (("pre", 0), ("inner", 1)):
        mean, var = np.mean([c for half in calls for c in half[k]], axis=0)
        for copy, want, rtol in zip(
            got[name], (mean, mean, var, var), (1e-5,) * 2 + (1e-4,) * 2, strict=True
        ):
            np.testing.assert_allclose(copy, want, rtol=rtol, atol=1e-6)
