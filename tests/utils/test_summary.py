import keras

from kseg.utils import count_macs, count_params, summarize


def test_macs_match_layer_arithmetic():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)  # 16*16*8*27
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 16*16*8*9
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)  # 16*16*8 inputs * 2*2*4
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)  # 4*10
    model = keras.Model(inputs, x)
    want = 16 * 16 * 8 * 27 + 16 * 16 * 8 * 9 + 16 * 16 * 8 * 2 * 2 * 4 + 40
    assert count_macs(model, (16, 16, 3)) == want


def test_summarize_reports_params_and_flops():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 1)(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, x)
    lines = []
    info = summarize(model, (8, 8, 3), print_fn=lines.append)
    assert info["params"] == 3 * 4 + 4 + 8 == count_params(model)
    assert info["params_total"] == info["params"] + 8
    assert info["macs"] == 8 * 8 * 4 * 3 and info["flops"] == 2 * info["macs"]
    assert "counted from the graph" in lines[0]
