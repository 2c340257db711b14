"""SegNode paper (Khoshsirat & Kambhamettu): parameter counts of Table 2, the ODE function
as the Baseline's residual module, training through the adjoint, the trajectory read-out
of section 4.8 and the section 4.1 presets."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.layers.hrnet import hr_module
from kseg.models import SegNode, create_model
from kseg.models.hrnet.hrnet import branch_channels
from kseg.models.segnode import miou_over_time, plot_miou_over_time, trajectory_logits
from kseg.models.segnode.segnode import hr_ode_function
from kseg.ode import ODEBlock, SolverConfig
from kseg.train import preset_for
from kseg.train.metrics import confusion_matrix, mean_iou
from kseg.utils import count_params
from tests.helpers import voc_batch

# Table 2, "Number of Parameters (Millions)", 19 Cityscapes classes.
TABLE_2 = {"hrnetv2_w48": 65.8e6, "residual_hrnet": 70.9e6, "segnode": 20.9e6}


@pytest.mark.parametrize("name", sorted(TABLE_2))
def test_parameter_counts_are_within_5_percent_of_table_2(name):
    params = count_params(create_model(name, num_classes=19))
    assert abs(params / TABLE_2[name] - 1) < 0.05, f"{name}: {params:,}"


def test_ocr_head_adds_exactly_its_layers():
    """HRNetV2+OCR minus HRNetV2 counted by hand: OCR's soft-region head is HRNetV2's own
    head, so the difference is the 3x3 pixel conv, query/key/value/up/fuse 1x1 convs
    with their batch norms (512 mid, 256 key channels) and the final classifier."""
    c, k, mid, key = 720, 19, 512, 256

    def conv_bn(cin, cout, kernel=1):
        return kernel * kernel * cin * cout + 2 * cout

    by_hand = (
        conv_bn(c, mid, 3)  # pixel representation
        + conv_bn(mid, key) + conv_bn(key, key)  # query
        + conv_bn(mid, key) + conv_bn(key, key)  # key
        + conv_bn(mid, key)  # value
        + conv_bn(key, mid)  # up
        + conv_bn(2 * mid, mid)  # fuse
        + mid * k + k  # classifier
    )  # fmt: skip
    plain = count_params(create_model("hrnetv2_w48", num_classes=k))
    ocr = count_params(create_model("hrnetv2_w48_ocr", num_classes=k))
    assert ocr - plain == by_hand


def _states(width=4, size=32, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(batch, size // 2**i, size // 2**i, c)).astype("float32")
        for i, c in enumerate(branch_channels(width))
    ]


def test_one_euler_step_of_the_ode_is_the_baselines_residual_unit():
    """SegNode turns h + module(h) into dh/dt = module(h): one Euler step of size 1 through
    SegNode's function must equal the Baseline's residual unit built independently from
    the same module weights."""
    keras.utils.set_random_seed(1)
    func = hr_ode_function(branch_channels(4), modules=1, blocks=1)
    states = _states()
    got = ODEBlock(func, solver=SolverConfig("euler", steps=1))(states)
    inputs = [keras.Input(s.shape[1:]) for s in states]
    updates = hr_module(inputs, blocks=1, preact=True, name="module1")
    unit = keras.Model(
        inputs, [keras.layers.Add()([x, u]) for x, u in zip(inputs, updates, strict=True)]
    )
    unit.set_weights(func.get_weights())
    want = unit(states)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # and half the step size twice is a different (second-order-closer) answer
    two = ODEBlock(func, solver=SolverConfig("euler", steps=2))(states)
    assert not np.allclose(two[0], got[0], atol=1e-4)


def test_segnode_trains_through_the_adaptive_solve():
    keras.utils.set_random_seed(2)
    # dopri5 and the adjoint; loose tolerances keep it to a few adaptive steps (at 1e-2
    # the adjoint's backward solve alone takes ~45 s on 2 cores)
    model = SegNode(num_classes=5, width=4, modules=1, blocks=1, solver={"rtol": 0.1, "atol": 0.1})
    images, labels = voc_batch(32, 32, num_classes=5)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(images, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    assert int(model.ode_block.nfe.numpy()) >= 7  # at least one dopri5 step
    pairs = zip(model.trainable_weights, grads, strict=True)
    assert not [w.path for w, g in pairs if g is None or not np.any(g)]


def test_segnode_trains_by_default_on_the_papers_rk4_with_the_adjoint():
    """Section 4.1's torchdiffeq Runge-Kutta solver and adjoint: rk4 on two steps, 8
    evaluations forward and 8 with their VJPs backward; on a fine grid the adjoint's
    gradients are those of back-propagating the steps (on [0, 0.1]: this untrained
    model's derivative is too steep for any grid of a few dozen steps over [0, 1])."""
    keras.utils.set_random_seed(4)
    model = SegNode(num_classes=5, width=4, modules=1, blocks=1, t1=0.1)
    assert model.solver == SolverConfig("rk4", steps=2, gradient="adjoint")
    images, labels = voc_batch(32, 32, num_classes=5)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        return tape.gradient(loss, model.trainable_weights)

    grads = gradients()
    block = model.ode_block
    counts = (block.nfe, block.backward_nfe, block.backward_accepted_steps)
    assert [int(c) for c in counts] == [8, 8, 2]
    pairs = zip(model.trainable_weights, grads, strict=True)
    assert not [w.path for w, g in pairs if g is None or not np.any(g)]
    model.set_solver("rk4", steps=64, gradient="adjoint")
    adjoint = gradients()
    model.set_solver("rk4", steps=64, gradient="direct")
    for got, want in zip(adjoint, gradients(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_trajectory_read_out_ends_at_the_models_output(tmp_path):
    keras.utils.set_random_seed(3)
    solver = SolverConfig("rk4", steps=4)
    model = SegNode(num_classes=5, width=4, modules=1, blocks=1, solver=solver)
    images, labels = voc_batch(64, 64, num_classes=5)
    times = [0.0, 0.5, 1.0]
    logits = trajectory_logits(model, images, times)
    assert logits.shape == (3, 2, 64, 64, 5)
    np.testing.assert_allclose(logits[-1], model(images, training=False), atol=1e-4)
    assert not np.allclose(logits[0], logits[-1], atol=1e-3)  # h(0) reads out differently
    # a coarser grid for the read-out changes the answer, as SegNode section 4.8 trades
    coarse = trajectory_logits(model, images, [1.0], method="euler", steps=1)
    assert not np.allclose(coarse[0], logits[-1], atol=1e-4)

    mious = miou_over_time(model, [(images, labels)], times, num_classes=5)
    final = confusion_matrix(labels, np.argmax(model(images, training=False), -1), 5)
    assert mious[-1] == pytest.approx(mean_iou(final.numpy()), abs=1e-6)
    path = plot_miou_over_time(times, mious, str(tmp_path / "miou.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_trajectory_times_outside_the_solve_are_refused():
    solver = SolverConfig("euler", steps=1)
    model = SegNode(num_classes=3, width=4, modules=1, blocks=1, solver=solver)
    with pytest.raises(ValueError, match="within"):
        trajectory_logits(model, np.zeros((1, 32, 32, 3), "float32"), [0.5, 2.0])


def test_presets_are_section_4_1():
    baseline = preset_for("residual_hrnet")
    assert (baseline.optimizer, baseline.weight_decay, baseline.batch_size) == ("adamw", 0.05, 16)
    assert (baseline.learning_rate, baseline.poly_power) == (1e-4, 0.9)
    segnode = preset_for("segnode")
    assert (segnode.optimizer, segnode.learning_rate, segnode.momentum) == ("sgd", 0.1, 0.9)
    assert segnode.weight_decay is None and segnode.poly_power == 0.9
    assert preset_for("segnode_ocr").aux_weight == 0.4 and segnode.aux_weight == 0
    optimizer = baseline.make_optimizer(total_steps=10)
    assert isinstance(optimizer, keras.optimizers.AdamW)
