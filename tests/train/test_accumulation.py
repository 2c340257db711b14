"""Gradient accumulation (`--accumulate`): a batch in pieces gives the whole batch's step."""

import keras
import numpy as np
import pytest

from kseg.models import create_model
from kseg.tasks import ClassificationTask, SegmentationTask
from kseg.train.accumulation import accumulating_train_step
from kseg.train.presets import preset_for
from tests.helpers import script_result


def _segmenter() -> keras.Model:
    """Two outputs, as ContextNet's logits and auxiliary logits, with group norms: a
    per-image norm, so that a piece normalises each image as the whole batch does."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.GroupNormalization(4, name="norm")(x)
    x = keras.layers.ReLU()(x)
    logits = keras.layers.Conv2D(3, 1, name="logits")(x)
    aux = keras.layers.Conv2D(3, 1, name="aux_logits")(inputs)
    return keras.Model(inputs, {"logits": logits, "aux_logits": aux}, name="contextnet_cn14")


def _one_step(build, compile_, x, y, pieces: int | None):
    keras.utils.set_random_seed(0)
    model = build()
    compile_(model)
    if pieces:
        model.train_step = accumulating_train_step(model, pieces)
    logs = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0).history
    return model, logs


@pytest.mark.parametrize("pieces", [2, 3])  # 6 images in 3 + 3, or in 2 + 2 + 2
def test_a_batch_in_pieces_takes_the_whole_batchs_step(pieces):
    """One step on 6 images in pieces gives the weights, optimiser state, losses and mean
    IoU of one step on the 6 at once: a segmenter with an auxiliary output, compiled with
    ContextNet's preset (RMSprop with momentum, coupled L2, the auxiliary loss at 0.4), and
    the Res-ODE Net of Carrara et al. (SGD with momentum, an ODE block solved inside the
    pieces' loop), against the Keras step."""
    rng = np.random.default_rng(0)
    x = rng.random((6, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 3, (6, 16, 16)).astype("int32")
    y = {"logits": labels, "aux_logits": labels}
    preset = preset_for("contextnet_cn14")

    def seg_compile(model):
        SegmentationTask().compile(model, preset, 3, 10)

    runs = [_one_step(_segmenter, seg_compile, x, y, p) for p in (None, pieces)]
    classes = rng.integers(0, 10, 6)

    def res_ode_net():  # 16 channels: oneDNN's 1x1 stride-2 kernel gradient writes past
        # its buffer below 16 input channels at odd batches (oneDNN issue 6035)
        return create_model(
            "res_ode_net", num_classes=10, width=16, stem_width=16, dropout=0.0,
            solver={"method": "rk4", "steps": 2},
        )  # fmt: skip

    def cls_compile(model):
        ClassificationTask().compile(model, preset_for("res_ode_net"), 10, 10)

    runs += [_one_step(res_ode_net, cls_compile, x, classes, p) for p in (None, pieces)]
    for (whole, whole_logs), (pieced, pieced_logs) in (runs[:2], runs[2:]):
        assert int(pieced.optimizer.iterations) == int(whole.optimizer.iterations) == 1
        for a, b in zip(whole.weights, pieced.weights, strict=True):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=2e-4, atol=2e-6, err_msg=a.path)
        for a, b in zip(whole.optimizer.variables, pieced.optimizer.variables, strict=True):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=2e-4, atol=2e-6, err_msg=a.path)
        assert whole_logs.keys() == pieced_logs.keys()
        for key, value in whole_logs.items():
            np.testing.assert_allclose(pieced_logs[key], value, rtol=1e-4, err_msg=key)
    keras.utils.set_random_seed(0)
    before = _segmenter().get_layer("conv").kernel.numpy()
    moved = runs[0][0].get_layer("conv").kernel.numpy() - before
    assert np.abs(moved).max() > 1e-3  # the step moved the weights: the equality is not idle


def test_batch_norm_sees_a_piece():
    """Batch norm normalises each piece by its own statistics: with pieces, a model with
    batch norm takes another step than with the whole batch (the documented price)."""
    rng = np.random.default_rng(1)
    x = rng.random((4, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 19, (4, 64, 64)).astype("int32")
    y = {"logits": labels, "aux_logits": labels}

    def build():
        return create_model("contextnet_cn14", num_classes=19, width_multiplier=0.25)

    def compile_(model):
        SegmentationTask().compile(model, preset_for("contextnet_cn14"), 19, 10)

    whole, _ = _one_step(build, compile_, x, y, None)
    pieced, _ = _one_step(build, compile_, x, y, 2)
    differ = [
        np.abs(a.numpy() - b.numpy()).max()
        for a, b in zip(whole.weights, pieced.weights, strict=True)
    ]
    assert max(differ) > 1e-4


# One step of a conv -> group norm -> ReLU -> conv net on a batch of 8: on one device whole,
# and on two replicas (two logical CPUs, in a process of their own) each running its 4
# images in 2 pieces.
MIRRORED = """
import json
import numpy as np
from kseg.train.strategy import get_strategy, split_cpu
split_cpu(2)
import keras
from kseg.train.accumulation import accumulating_train_step

def build():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(8, 3, padding="same")(x)
    y = keras.layers.ReLU()(keras.layers.GroupNormalization(4)(y))
    model = keras.Model(x, keras.layers.Conv2D(2, 1)(y))
    model.compile(keras.optimizers.SGD(0.5, momentum=0.9), "mse")
    return model

rng = np.random.default_rng(0)
images = rng.normal(size=(8, 8, 8, 3)).astype("float32")
targets = rng.normal(size=(8, 8, 8, 2)).astype("float32")
out = {}
for name, strategy, pieces in (("one", get_strategy("default"), 1),
                               ("mirrored", get_strategy("mirrored"), 2)):
    with strategy.scope():
        model = build()
    if pieces > 1:
        model.train_step = accumulating_train_step(model, pieces)
    logs = model.fit(images, targets, batch_size=8, epochs=1, shuffle=False, verbose=0)
    out[name] = {"replicas": strategy.num_replicas_in_sync, "loss": logs.history["loss"][0],
                 "weights": [np.asarray(w).ravel().tolist() for w in model.weights]}
print("RESULT" + json.dumps(out))
"""


def test_pieces_on_two_replicas_take_one_devices_step_on_the_whole_batch():
    """Under `MirroredStrategy` each replica runs its share in pieces and the summed
    gradients are all-reduced once: the step is one device's on the whole batch."""
    out = script_result(MIRRORED)
    assert [out[k]["replicas"] for k in ("one", "mirrored")] == [1, 2]
    np.testing.assert_allclose(out["mirrored"]["loss"], out["one"]["loss"], rtol=1e-5)
    for a, b in zip(out["mirrored"]["weights"], out["one"]["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_synchronised_batch_norm_is_refused():
    """Synchronised batch norm all-reduces in every call, which TensorFlow allows in no
    loop (and written out piece by piece, the step took more memory than the whole
    batch): refused, by name."""
    model = create_model("contextnet_cn14", num_classes=19, width_multiplier=0.25)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            break
    with pytest.raises(ValueError, match="synchronised over replicas cannot run in the"):
        accumulating_train_step(model, 2)
