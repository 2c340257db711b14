import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.layers import (
    ResizeLike,
    inverted_residual,
    segmentation_head,
    separable_conv_norm_act,
)


def _layers_of(fn, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, fn(inputs))


@pytest.mark.parametrize(
    "cin,cout,t,stride,residual",
    [(32, 32, 6, 1, True), (32, 48, 6, 2, False), (32, 32, 6, 2, False)],
)
def test_inverted_residual_structure_and_params(cin, cout, t, stride, residual):
    model = _layers_of(lambda x: inverted_residual(x, cout, t, stride), (16, 16, cin))
    has_add = any(isinstance(layer, keras.layers.Add) for layer in model.layers)
    assert has_add == residual
    mid = cin * t
    convs = cin * mid + 9 * mid + mid * cout
    bn = 4 * (mid + mid + cout)  # gamma, beta, moving mean, moving variance
    assert model.count_params() == convs + bn
    assert model.output.shape[1] == 16 // stride


def test_expansion_one_has_no_expand_conv():
    model = _layers_of(lambda x: inverted_residual(x, 32, 1), (8, 8, 32))
    assert not any("expand" in layer.name for layer in model.layers)


def test_separable_conv_has_no_nonlinearity_between_depthwise_and_pointwise():
    model = _layers_of(lambda x: separable_conv_norm_act(x, 16), (8, 8, 8))
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == [
        "DepthwiseConv2D",
        "BatchNormalization",
        "Conv2D",
        "BatchNormalization",
        "Activation",
    ]


def test_resize_like_matches_tf_image_resize():
    x = np.random.default_rng(0).normal(size=(1, 3, 5, 2)).astype("float32")
    ref = np.zeros((1, 7, 9, 1), "float32")
    want = tf.image.resize(x, (7, 9), method="bilinear")
    np.testing.assert_allclose(ResizeLike()([x, ref]), want, rtol=1e-6)
    with pytest.raises(ValueError, match="bilinear"):
        ResizeLike("bicubic")


def test_segmentation_head_is_float32_logits_at_upsampled_size():
    model = _layers_of(lambda x: segmentation_head(x, 7, dropout=0.1, upsample=4), (4, 6, 8))
    assert model.output.shape[1:] == (16, 24, 7)
    assert model.output.dtype == "float32"


def test_the_first_exported_names_build_what_they_built():
    from kseg.layers import conv_bn_act, depthwise_bn_act, separable_conv_bn_act

    model = _layers_of(
        lambda x: separable_conv_bn_act(
            depthwise_bn_act(conv_bn_act(x, 8, strides=2, name="c"), dilation_rate=2), 16
        ),
        (8, 8, 4),
    )
    layers = {layer.name: layer for layer in model.layers[1:]}
    assert list(layers) == [
        "c_conv", "c_bn", "c_act", "dw_dwconv", "dw_bn", "dw_act",
        "sep_dw_dwconv", "sep_dw_bn", "sep_pw_conv", "sep_pw_bn", "sep_pw_act",
    ]  # fmt: skip
    assert not layers["c_conv"].use_bias and layers["c_conv"].strides == (2, 2)
    assert layers["dw_dwconv"].dilation_rate == (2, 2)
    assert all(layers[n].get_config()["activation"] == "relu6" for n in ("c_act", "sep_pw_act"))
    assert (layers["c_bn"].momentum, layers["c_bn"].epsilon) == (0.99, 1e-3)
    unnormalised = _layers_of(lambda x: conv_bn_act(x, 8, norm=False, activation=None), (8, 8, 4))
    assert [type(layer).__name__ for layer in unnormalised.layers[1:]] == ["Conv2D"]
    assert unnormalised.layers[1].use_bias
