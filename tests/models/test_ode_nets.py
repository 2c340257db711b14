"""The ODE Nets of Carrara et al. 2019: Table 1's parameter counts, the architecture's
shapes, and the z(t) features read out of them."""

import keras
import numpy as np
import pytest

from kseg.features import PAPER_TIMES, extract, solver_statistics
from kseg.models import ODEOnlyNet, ResNetGN, ResODENet, create_model
from kseg.ode import SolverConfig, odeint
from kseg.utils.summary import count_params
from tests.helpers import digits_batch


def _conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


def _gn(c):
    return 2 * c


def _resblock(cin, cout, shortcut):
    """Pre-activation block of the official code: two bias-free 3x3 convs, two GroupNorms,
    a bias-free 1x1 shortcut conv when the block downsamples."""
    return (
        _gn(cin)
        + _conv(3, cin, cout, False)
        + _gn(cout)
        + _conv(3, cout, cout, False)
        + (_conv(1, cin, cout, False) if shortcut else 0)
    )


# Counted from the official code's layer list (model.py), independently of kseg's graph.
DOWNSAMPLE = _conv(3, 3, 64, True) + _resblock(64, 64, True) + _resblock(64, 256, True)
ODE_FUNCTION = 3 * _gn(256) + 2 * _conv(3, 257, 256, True)  # t is an input channel
CLASSIFIER = _gn(256) + 256 * 10 + 10
EXPECTED = {
    "resnet_gn": (DOWNSAMPLE + 6 * _resblock(256, 256, False) + CLASSIFIER, 7.92e6),
    "res_ode_net": (DOWNSAMPLE + ODE_FUNCTION + CLASSIFIER, 2.02e6),
    "ode_only_net": (_conv(4, 3, 256, True) + ODE_FUNCTION + CLASSIFIER, 1.20e6),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts_match_the_official_layers_and_table_1(name):
    exact, table_1 = EXPECTED[name]
    params = count_params(create_model(name))
    assert params == exact
    assert abs(params - table_1) / table_1 < 0.05  # the tolerance; in fact < 0.2%


def test_feature_map_sizes_on_cifar_images():
    x = np.zeros((1, 32, 32, 3), "float32")
    resnet = ResNetGN(width=16, stem_width=8, blocks=1)
    taps = keras.Model(
        resnet.input, [resnet.get_layer(n).output for n in ("stem_conv", "down1_add", "down2_add")]
    )
    assert [tuple(t.shape[1:3]) for t in taps(x)] == [(30, 30), (15, 15), (8, 8)]
    ode_only = ODEOnlyNet(width=16, solver=SolverConfig("euler", steps=1))
    state = keras.Model(ode_only.input, ode_only.get_layer("stem_conv").output)(x)
    assert tuple(state.shape) == (1, 16, 16, 16)


def test_the_ode_function_sees_the_time():
    model = ResODENet(width=8, stem_width=8, solver=SolverConfig("euler", steps=1))
    func = model.ode_block.func
    z = np.random.default_rng(0).normal(size=(1, 8, 8, 8)).astype("float32")
    assert not np.allclose(func(z, t=0.0), func(z, t=1.0), atol=1e-4)


def _tiny(cls, **kw):
    keras.utils.set_random_seed(0)
    return cls(num_classes=10, width=8, **kw)


def test_z_t_features_are_the_pooled_ode_states_and_end_at_the_classifier_input():
    """z(0) is the ODE block's input, z(1) what the classifier pools (checked against the
    model's own layers), and z(0.45) the state of a direct `odeint` on the same grid,
    pooled by hand (a second path). ODEOnlyNet shares the code; its solves cost 4x."""
    # 20 Euler steps: graphs build fast
    model = _tiny(ResODENet, stem_width=8, solver=SolverConfig("euler", steps=20))
    images, _ = digits_batch(32, 32, batch=4)
    features = extract(model, images, batch_size=3)  # t = 0, 0.05, ..., 1: one step each
    assert features.values.shape == (21, 4, 8) and features.names[9] == "t=0.45"
    np.testing.assert_allclose(features.positions, PAPER_TIMES)
    pooled = keras.Model(model.input, model.get_layer("head_pool").output)
    np.testing.assert_allclose(features.values[-1], pooled(images), atol=1e-5)
    block = model.ode_block
    z0 = keras.Model(model.input, block.input)(images)
    head = model.get_layer("head_norm")

    def pool(z):
        return np.maximum(head(z), 0).mean(axis=(1, 2))

    np.testing.assert_allclose(features.values[0], pool(z0), atol=1e-5)
    grid = [round(0.05 * k, 2) for k in range(10)]
    z = odeint(block._derivative, z0, grid, method="euler", options={"steps": 9})[-1]
    np.testing.assert_allclose(features.values[9], pool(z), atol=1e-5)


def test_resnet_features_are_its_last_seven_blocks():
    model = _tiny(ResNetGN, stem_width=8)
    images, _ = digits_batch(32, 32, batch=3)
    features = extract(model, images)
    assert features.names == ["down2_add", *(f"block{i}_add" for i in range(1, 7))]
    np.testing.assert_allclose(features.positions, np.linspace(0, 1, 7))
    pooled = keras.Model(model.input, model.get_layer("head_pool").output)
    np.testing.assert_allclose(features.values[-1], pooled(images), atol=1e-5)
    with pytest.raises(ValueError, match="no ODE block"):
        extract(model, images, times=[0.5])


def test_solver_steps_per_image_are_those_of_solving_each_image_alone():
    model = _tiny(ODEOnlyNet, solver={"rtol": 1e-4, "atol": 1e-4})
    images, _ = digits_batch(32, 32, batch=3)
    stats = solver_statistics(model, images)
    block = model.ode_block
    z0 = keras.Model(model.input, block.input)(images).numpy()
    for i in range(3):
        block(z0[i : i + 1])  # eager, one image: the second path
        assert stats["nfe"][i] == int(block.nfe.numpy())
        assert stats["accepted_steps"][i] == int(block.accepted_steps.numpy()) >= 1
    with pytest.raises(ValueError, match="no ODE block"):
        solver_statistics(_tiny(ResNetGN, stem_width=8, blocks=1), images)
