import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.layers import AdaptiveAveragePooling2D, pyramid_pooling


def reference_adaptive_pool(x, out_h, out_w):
    """Loop form of PyTorch's adaptive_avg_pool2d bins, channels-last."""
    n, h, w, c = x.shape
    y = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        h0, h1 = (i * h) // out_h, -(-((i + 1) * h) // out_h)
        for j in range(out_w):
            w0, w1 = (j * w) // out_w, -(-((j + 1) * w) // out_w)
            y[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return y


@pytest.mark.parametrize("size,bins", [((7, 11), 3), ((32, 64), 6), ((2, 3), 6), ((5, 5), (1, 2))])
@pytest.mark.parametrize("shape", ["static", "dynamic"])
def test_adaptive_pooling_matches_reference(size, bins, shape):
    """A known size makes the pooling matrices constants, an unknown one computes them in
    the graph: both give PyTorch's bins."""
    x = np.random.default_rng(0).normal(size=(2, *size, 4)).astype("float32")
    spec = tf.TensorSpec(x.shape if shape == "static" else (None, None, None, 4))
    pool = tf.function(AdaptiveAveragePooling2D(bins), input_signature=[spec])
    graph = pool.get_concrete_function().graph
    assert ("Range" in {op.type for op in graph.get_operations()}) == (shape == "dynamic")
    y = pool(x)
    out = (bins, bins) if isinstance(bins, int) else bins
    np.testing.assert_allclose(y, reference_adaptive_pool(x, *out), rtol=1e-5, atol=1e-6)


def test_adaptive_pooling_equals_average_pooling_when_divisible():
    x = np.random.default_rng(1).normal(size=(1, 12, 18, 3)).astype("float32")
    want = keras.layers.AveragePooling2D((4, 6))(x)
    np.testing.assert_allclose(AdaptiveAveragePooling2D(3)(x), want, rtol=1e-5, atol=1e-6)


def test_adaptive_pooling_rejects_bad_size():
    with pytest.raises(ValueError, match="positive"):
        AdaptiveAveragePooling2D(0)


def test_sum_pyramid_pooling_of_constant_map_multiplies_it():
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, pyramid_pooling(inputs, bins=(1, 2, 3), merge="sum"))
    assert model.count_params() == 0
    x = np.full((1, 9, 10, 8), 0.5, "float32")
    np.testing.assert_allclose(model(x), 4 * x, rtol=1e-6)


def test_concat_pyramid_pooling_channels_and_params():
    inputs = keras.Input((None, None, 16))
    model = keras.Model(inputs, pyramid_pooling(inputs, bins=(1, 2, 3, 6), merge="concat"))
    assert model.output.shape[-1] == 16 + 4 * 4
    # four 1x1 convs 16 -> 4 without bias, each with batch norm (4 gamma/beta + 4 + 4 stats)
    assert model.count_params() == 4 * (16 * 4 + 4 * 4)


def test_pyramid_pooling_rejects_unknown_merge():
    with pytest.raises(ValueError, match="concat"):
        pyramid_pooling(keras.Input((4, 4, 8)), merge="max")
