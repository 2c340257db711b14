import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.layers import Upsample


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_upsample_equals_upsampling2d_and_works_on_unknown_sizes(interpolation):
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype("float32")
    want = keras.layers.UpSampling2D(4, interpolation=interpolation)(x)
    np.testing.assert_allclose(Upsample(4, interpolation)(x), want, atol=1e-6)
    layer = Upsample(2, interpolation)
    unknown = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    assert unknown(x).shape == (2, 10, 14, 3)
    assert layer.compute_output_shape((None, None, 7, 3)) == (None, None, 14, 3)
    assert Upsample.from_config(layer.get_config()).factor == 2


def test_contextnet_runs_on_unknown_image_sizes_in_graph_mode():
    from kseg.models import ContextNet

    model = ContextNet(num_classes=3, aux_head=False)
    run = tf.function(
        lambda x: model(x, training=False), input_signature=[tf.TensorSpec([1, None, None, 3])]
    )
    assert run(tf.zeros((1, 64, 96, 3))).shape == (1, 64, 96, 3)
