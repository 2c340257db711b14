"""DeepLabV3+ on ResNet-101 / Xception-65 and the cross cooperative network (Ikedo & Hotta 2022):
the backbones against keras.applications and closed-form counts, the head's count per
connection setting, and which network's output depends on which network's weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.errors import UserError
from kseg.models import CrossCooperative, DeepLabV3Plus
from kseg.models.backbones import resnet_backbone, xception_backbone
from kseg.models.backbones.resnet import load_keras_resnet_weights
from kseg.utils.summary import count_params

TINY_COOP = {
    "top_depth": 1,
    "bottom_depth": (1, 1, 1, 1),
    "backbone_width": 0.125,
    "head_channels": 8,
}


def _trainable(layer_or_model) -> int:
    return int(sum(np.prod(w.shape) for w in layer_or_model.trainable_weights))


@pytest.fixture(scope="module")
def keras_resnet101(tmp_path_factory):
    """keras.applications' ResNet-101 with random weights and batch-norm statistics, and
    its weights file (what `weights=` takes)."""
    keras.utils.set_random_seed(0)
    ref = keras.applications.ResNet101(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(0)
    for layer in ref.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                 rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)]
            )  # fmt: skip
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    path = str(tmp_path_factory.mktemp("weights") / "resnet101.weights.h5")
    ref.save_weights(path)
    return ref, path


def test_resnet101_with_keras_weights_computes_what_keras_applications_does(keras_resnet101):
    ref, path = keras_resnet101
    inputs = keras.Input((None, None, 3))
    high, low = resnet_backbone(inputs, output_stride=32, multi_grid=(1,))
    ours = keras.Model(inputs, [high, low])
    # Ours has no conv biases (folded into the batch norms) and takes RGB in [0, 1].
    biases = sum(
        int(np.prod(la.bias.shape)) for la in ref.layers if isinstance(la, keras.layers.Conv2D)
    )
    assert ours.count_params() == ref.count_params() - biases
    assert load_keras_resnet_weights(ours, path) == 2 * 104  # 104 convs, each with its BN
    x = np.random.default_rng(1).random((2, 64, 96, 3)).astype("float32")
    want = ref(keras.applications.resnet.preprocess_input(255.0 * x), training=False)
    got = ours(x, training=False)[0]
    assert got.shape == (2, 2, 3, 2048)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * float(np.abs(want).max()))


def test_imagenet_weights_load_by_name_and_a_tiny_backbone_says_why_not(keras_resnet101):
    ref, path = keras_resnet101
    model = DeepLabV3Plus(num_classes=21, backbone_weights=path)
    np.testing.assert_array_equal(
        model.get_layer("conv4_block23_2_conv").kernel, ref.get_layer("conv4_block23_2_conv").kernel
    )
    assert "backbone_weights" not in model.get_config()  # a saved model carries its own
    # what a run prints of them
    assert model.backbone_report == [
        f"Backbone resnet101: ImageNet weights from {path} (208 layers)"
    ]
    with pytest.raises(ValueError, match="full-depth ResNet-101"):
        DeepLabV3Plus(num_classes=21, backbone_depth=(1, 1, 1, 1), backbone_weights=path)
    with pytest.raises(UserError, match="not a PyTorch state dict"):  # Xception's are timm's
        DeepLabV3Plus(
            num_classes=21, backbone="xception65", backbone_weights=path, convention="pytorch"
        )


def _xception_count(middle: int, w: float = 1.0) -> int:
    """Closed form of the table in kseg.models.backbones.xception (trainable weights:
    kernels and batch-norm scale and offset; no biases)."""
    c = lambda v: max(1, round(v * w))  # noqa: E731

    def sep(cin, cout):
        return 9 * cin + 2 * cin + cin * cout + 2 * cout

    def module(cin, chans, shortcut):
        n, prev = 0, cin
        for ch in chans:
            n += sep(prev, c(ch))
            prev = c(ch)
        return n + (cin * c(chans[-1]) + 2 * c(chans[-1]) if shortcut else 0)

    n = 27 * c(32) + 2 * c(32) + 9 * c(32) * c(64) + 2 * c(64)
    n += module(c(64), (128,) * 3, True) + module(c(128), (256,) * 3, True)
    n += module(c(256), (728,) * 3, True) + middle * module(c(728), (728,) * 3, False)
    n += module(c(728), (728, 1024, 1024), True) + module(c(1024), (1536, 1536, 2048), False)
    return n


@pytest.mark.parametrize("middle,width", [(16, 1.0), (2, 0.25)])
def test_xception_count_and_strides(middle, width):
    inputs = keras.Input((64, 64, 3))
    high, low = xception_backbone(inputs, middle, width, output_stride=16)
    model = keras.Model(inputs, [high, low])
    assert _trainable(model) == _xception_count(middle, width)
    assert high.shape == (None, 4, 4, round(2048 * width))
    assert low.shape == (None, 16, 16, round(256 * width))
    # Output stride 16: exit block 1 keeps the resolution, exit block 2 dilates by 2.
    assert model.get_layer("xception_exit1_sep3_dw").strides == (1, 1)
    assert model.get_layer("xception_exit2_sep1_dw").dilation_rate == (2, 2)


def test_resnet_output_stride_dilates_with_multi_grid():
    inputs = keras.Input((64, 64, 3))
    high, low = resnet_backbone(inputs, (1, 1, 1, 3), 0.25, output_stride=8)
    model = keras.Model(inputs, [high, low])
    assert high.shape[1:3] == (8, 8) and low.shape[1:3] == (16, 16)
    assert model.get_layer("conv4_block1_2_conv").dilation_rate == (2, 2)
    rates = [model.get_layer(f"conv5_block{b}_2_conv").dilation_rate[0] for b in (1, 2, 3)]
    assert rates == [4, 8, 16]  # rate 4 at output stride 8, times the multi-grid (1, 2, 4)


def _head_count(ch, cl, k, c=256, low=48, mixed=frozenset(), streams_in=1):
    """Closed-form trainable count of one network's DeepLabV3+ head when the points in
    `mixed` bring a second network's map of the same width."""
    f = lambda point: 2 if point in mixed else 1  # noqa: E731
    cbr = lambda cin, cout, k2=1: k2 * cin * cout + 2 * cout  # noqa: E731
    n = cbr(f("connection1") * ch, c) + 3 * cbr(f("connection1") * ch, c, 9)
    n += cbr(f("connection1") * ch, c)  # image pooling
    project_in = sum(f(p) for p in ("aspp0", "aspp1", "aspp2", "aspp3", "aspp_pool")) * c
    n += cbr(project_in, c) + cbr(cl, low)
    n += cbr(f("connection2") * c + f("decoder1") * low, c, 9) + cbr(f("decoder2") * c, c, 9)
    return n + f("decoder3") * c * k + k


ALL = frozenset(
    ["connection1", "aspp0", "aspp1", "aspp2", "aspp3", "aspp_pool", "connection2",
     "decoder1", "decoder2", "decoder3"]
)  # fmt: skip


def test_full_size_counts_are_backbone_plus_closed_form_head():
    xception = _xception_count(16)
    ref = keras.applications.ResNet101(include_top=False, weights=None)
    biases = [la.bias for la in ref.layers if isinstance(la, keras.layers.Conv2D)]
    resnet = _trainable(ref) - sum(int(np.prod(b.shape)) for b in biases)
    x_head = _head_count(2048, 256, 21)
    r_head = _head_count(2048, 256, 21)
    assert count_params(DeepLabV3Plus(21, "xception65")) == xception + x_head == 54_711_461
    assert count_params(DeepLabV3Plus(21, "resnet101")) == resnet + r_head == 59_344_309
    coop = xception + resnet + 2 * _head_count(2048, 256, 21, mixed=ALL)
    assert count_params(CrossCooperative(21)) == coop == 147_711_066


@pytest.mark.parametrize(
    "kwargs,top_mixed,bottom_mixed",
    [
        ({}, ALL, ALL),
        ({"paths": "one_way"}, frozenset(), ALL),
        ({"paths": "none"}, frozenset(), frozenset()),
        ({"connection1": False}, ALL - {"connection1"}, ALL - {"connection1"}),
        ({"connection2": False}, ALL - {"connection2"}, ALL - {"connection2"}),
    ],
)
def test_connection_options_widen_exactly_the_receiving_layers(kwargs, top_mixed, bottom_mixed):
    model = CrossCooperative(num_classes=3, **TINY_COOP, **kwargs)
    w = TINY_COOP["backbone_width"]
    heads = {
        s: sum(_trainable(la) for la in model.layers if la.name.startswith(f"{s}_")
               and not _in_backbone(la.name))
        for s in ("top", "bottom")
    }  # fmt: skip
    c = TINY_COOP["head_channels"]
    top = _head_count(round(2048 * w), round(256 * w), 3, c=c, mixed=top_mixed)
    bottom = _head_count(round(2048 * w), round(256 * w), 3, c=c, mixed=bottom_mixed)
    assert heads == {"top": top, "bottom": bottom}


def _in_backbone(name: str) -> bool:
    stem = name.split("_", 1)[1]
    return stem.startswith(("xception_", "conv", "pool1", "preprocess"))


def _depends(model, output: str, stream: str, x) -> bool:
    weights = [w for w in model.trainable_weights if w.path.startswith(f"{stream}_")]
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(model(x, training=False)[output] ** 2)
    grads = tape.gradient(y, weights)
    return any(g is not None and np.any(g.numpy()) for g in grads)


@pytest.mark.parametrize(
    "paths,top_needs_bottom,bottom_needs_top",
    [("cross", True, True), ("one_way", False, True), ("none", False, False)],
)
def test_which_network_reads_which(paths, top_needs_bottom, bottom_needs_top):
    keras.utils.set_random_seed(0)
    model = CrossCooperative(num_classes=3, paths=paths, **TINY_COOP)
    x = np.random.default_rng(0).random((1, 33, 47, 3)).astype("float32")
    assert _depends(model, "top_logits", "bottom", x) == top_needs_bottom
    assert _depends(model, "bottom_logits", "top", x) == bottom_needs_top
    assert _depends(model, "top_logits", "top", x) and _depends(model, "bottom_logits", "bottom", x)


def test_prediction_is_the_mean_or_the_chosen_network():
    x = np.random.default_rng(0).random((1, 33, 47, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    out = CrossCooperative(num_classes=3, **TINY_COOP)(x, training=False)
    assert out["logits"].shape == (1, 33, 47, 3)  # any size, odd ones too (513 x 513)
    np.testing.assert_allclose(
        out["logits"], (out["top_logits"] + out["bottom_logits"]) / 2, atol=1e-6
    )
    keras.utils.set_random_seed(0)
    out = CrossCooperative(num_classes=3, prediction="bottom", **TINY_COOP)(x, training=False)
    np.testing.assert_array_equal(out["logits"], out["bottom_logits"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"paths": "two_way"}, "paths must be one of"),
        ({"prediction": "max"}, "prediction must be one of"),
        ({"top": "vgg16"}, "unknown backbone"),
        ({"output_stride": 32}, "output_stride must be 8 or 16"),
    ],
)
def test_bad_arguments_say_what_is_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrossCooperative(num_classes=3, **{**TINY_COOP, **kwargs})


def test_training_loss_is_equation_1_the_sum_of_both_networks_cross_entropies():
    from kseg.train import compile_model, preset_for
    from kseg.train.engine import with_targets
    from tests.helpers import voc_batch

    model = CrossCooperative(num_classes=3, **TINY_COOP)
    compile_model(model, preset_for("cross_cooperative", "voc"), 3, total_steps=10)
    images, labels = voc_batch(48, 48, num_classes=3)
    labels[:, :4] = 255  # ignored
    ds = with_targets(tf.data.Dataset.from_tensors((images, labels)), model)
    result = model.evaluate(ds, return_dict=True, verbose=0)
    out = model(images, training=False)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
    want = float(ce(labels, out["top_logits"]) + ce(labels, out["bottom_logits"]))
    # plus the preset's weight decay, coupled L2 4e-5 / 2 * sum(w^2) over its weights
    decayed = [v for v in model.trainable_variables if v.regularizer is not None]
    assert decayed and all("depthwise" not in v.path for v in decayed)
    penalty = 4e-5 / 2 * sum(float(np.sum(np.square(v.numpy()))) for v in decayed)
    assert result["loss"] == pytest.approx(want + penalty, rel=1e-4)
    assert float(ce(labels, out["logits"])) != pytest.approx(want / 2, rel=1e-3)
