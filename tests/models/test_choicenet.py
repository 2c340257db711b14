"""ChoiceNet (Rayhan et al.): Table 1's parameter counts, the module's wiring against a
second implementation from its weights, pooling, and the U-Nets of Table 4."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.layers.choice import choice_block, choice_module, choice_pool
from kseg.layers.norm import TORCH_BATCH_NORM
from kseg.models import ChoiceNet, create_model

TABLE1 = {"choicenet_30": 13.0e6, "choicenet_37": 19.2e6, "choicenet_40": 23.4e6}


def _closed_form_count(growth, classes=10, blocks=3, modules=3, pooling="both", ks=(3, 5, 7),
                       chain=3, in_channels=3):  # fmt: skip
    """Parameters of ChoiceNet by hand: convs without bias, batch norm 4 per channel."""
    g, bn = growth, 4 * growth
    stem = 2 * g
    total = 9 * in_channels * stem + 4 * stem
    c = stem
    for b in range(blocks):
        for _ in range(modules):
            total += c * g + bn  # bottleneck
            total += sum(chain * (k * k * g * g + bn) for k in ks)
            c += (1 + 2 * len(ks)) * g
        if b < blocks - 1 and pooling == "both":
            c *= 2
    features = 2 * c if pooling == "both" else c
    return total + 4 * features + features * classes + classes  # head batch norm, dense


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_counts_match_table1_and_a_hand_count(name):
    model = create_model(name)
    count = model.count_params()
    assert count == _closed_form_count(model.get_config()["width"])
    assert abs(count / TABLE1[name] - 1) < 0.03, count  # the issue asks for 10%


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_single_pooling_variants_count(pooling):
    model = ChoiceNet(width=8, pooling=pooling)
    assert model.count_params() == _closed_form_count(8, pooling=pooling)
    with pytest.raises(ValueError, match="pooling must be one of"):
        ChoiceNet(width=8, pooling="min")


def _set_random_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
        else:
            w.assign(rng.normal(0, 0.3, shape).astype("float32"))


def _conv_bn_relu(model, name, x):
    """conv (same padding, no bias) -> inference batch norm -> ReLU from `model`'s weights."""
    kernel = model.get_layer(f"{name}_conv").kernel
    bn = model.get_layer(f"{name}_bn")
    y = tf.nn.conv2d(x, kernel, 1, "SAME")
    y = (y - bn.moving_mean) / tf.sqrt(bn.moving_variance + TORCH_BATCH_NORM.epsilon)
    return tf.nn.relu(y * bn.gamma + bn.beta)


def test_module_matches_a_second_implementation_from_its_weights():
    growth, ks, chain = 3, (3, 5, 7), 3
    inputs = keras.Input((8, 8, 5))
    model = keras.Model(inputs, choice_module(inputs, growth, ks, chain, name="m"))
    _set_random_weights(model)
    x = tf.random.stateless_normal((2, 8, 8, 5), seed=(1, 2))
    e = _conv_bn_relu(model, "m_bottleneck", x)
    want = [e]
    for k in ks:
        z = e
        for j in range(1, chain + 1):
            h = _conv_bn_relu(model, f"m_k{k}_conv{j}", z)
            if j < chain:
                z = h + z
        want += [h + z, h]  # with the skip (A, C, F), without (B, D, G)
    got = model(x, training=False)
    assert got.shape[-1] == 7 * growth
    np.testing.assert_allclose(got, tf.concat(want, -1), rtol=1e-4, atol=1e-4)


def test_block_is_densely_connected():
    growth, channels = 2, 5
    inputs = keras.Input((8, 8, channels))
    model = keras.Model(inputs, choice_block(inputs, growth, modules=3, name="b"))
    assert model.output.shape[-1] == channels + 3 * 7 * growth
    for i in range(1, 4):  # module i reads the input and the i - 1 earlier modules
        kernel = model.get_layer(f"b_m{i}_bottleneck_conv").kernel
        assert tuple(kernel.shape) == (1, 1, channels + 7 * growth * (i - 1), growth)
    # The block output starts with its input unchanged.
    x = np.random.default_rng(0).normal(size=(1, 8, 8, channels)).astype("float32")
    np.testing.assert_array_equal(model(x)[..., :channels], x)


def test_pooling_both_concatenates_max_and_average():
    x = np.random.default_rng(0).normal(size=(2, 6, 4, 3)).astype("float32")
    windows = x.reshape(2, 3, 2, 2, 2, 3)
    want_max, want_avg = windows.max(axis=(2, 4)), windows.mean(axis=(2, 4))
    for pooling, want in [
        ("both", np.concatenate([want_max, want_avg], -1)),
        ("max", want_max),
        ("avg", want_avg),
    ]:
        inputs = keras.Input((6, 4, 3))
        got = keras.Model(inputs, choice_pool(inputs, pooling, name="p"))(x)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_unets_of_table4():
    """Table 4's text: the ChoiceNet U-Net has 13M parameters, fewer than the U-Nets of
    residual and dense blocks (CamVid, 12 classes)."""
    counts = {n: create_model(n, num_classes=12).count_params()
              for n in ("choicenet_unet", "res_unet", "dense_unet")}  # fmt: skip
    assert abs(counts["choicenet_unet"] / 13e6 - 1) < 0.1, counts
    assert counts["choicenet_unet"] < min(counts["res_unet"], counts["dense_unet"]), counts


def test_unet_levels_use_the_chosen_block():
    model = create_model("choicenet_unet", num_classes=3, width=14, levels=1)
    # growth = level width // 7: 2 at level 0, 4 at the bottom
    assert tuple(model.get_layer("down0_m1_k7_conv1_conv").kernel.shape) == (7, 7, 2, 2)
    assert tuple(model.get_layer("bottom_m1_k3_conv3_conv").kernel.shape) == (3, 3, 4, 4)
    assert model.get_layer("up0_transition_conv").kernel.shape[-1] == 14
    dense = create_model("dense_unet", num_classes=3, width=8, levels=1)
    assert tuple(dense.get_layer("down0_l4_3x3_conv").kernel.shape) == (3, 3, 8, 2)
    with pytest.raises(ValueError, match="block must be one of"):
        create_model("unet", block="inception")
