"""Quantisation-aware training: the simulation folds and quantises as the TFLite converter
does (checked against the converter's own post-training int8 and against LiteRT), the
rewritten model starts where the float model is, and the recipes' `qat` command writes
int8 files with the learned ranges that LiteRT and MediaPipe run."""

import os
import re

import keras
import numpy as np
import pytest

from kseg.errors import UserError
from kseg.export import export, quantize_aware
from kseg.export.formats import export_saved_model, export_tflite, logits_model
from kseg.export.qat import fake_quants, float_ops
from kseg.export.runtimes import run_tflite
from kseg.layers import AdaptiveAveragePooling2D, QuantConv, ResizeLike
from kseg.models.loading import load_model

SIZE = (32, 32)


def _tiny_model() -> keras.Model:
    """Every kind of op the rewrite handles: conv + BN + ReLU6, depthwise + BN, a conv with
    bias, add + ReLU, adaptive pooling, resize, concatenation, a 3-way add."""
    from kseg.models.base import GraphImageModel

    L = keras.layers
    x = inputs = keras.Input((*SIZE, 3))
    a = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="a_conv")(x)
    a = L.BatchNormalization(name="a_bn")(a)
    a = L.ReLU(6.0, name="a_act")(a)
    b = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="b_dwconv")(a)
    b = L.BatchNormalization(name="b_bn")(b)
    c = L.Conv2D(8, 1, name="c_conv")(b)
    c = L.Conv2D(8, 1, activation="relu", name="d_conv")(c)  # its own activation
    s = L.Activation("relu", name="s_act")(L.Add(name="s_add")([a, c]))
    p = ResizeLike(name="p_up")([AdaptiveAveragePooling2D(2, name="p_pool")(s), s])
    t = L.Add(name="t_add")([s, p, c])
    x = L.Concatenate(name="cat")([t, p])
    outputs = L.Conv2D(4, 1, name="classifier")(x)
    model = GraphImageModel(inputs=inputs, outputs=outputs, name="tiny")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # batch norms with statistics of their own
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n),
                 rng.uniform(0.2, 3, n)]
            )  # fmt: skip
    return model


def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(1).uniform(size=(n, *SIZE, 3)).astype("float32")


def _weights(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 filter, per-channel scales) of every convolution of a TFLite file, in order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    found = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            filt = interpreter._get_tensor_details(op["inputs"][1], 0)
            found.append(
                (interpreter.get_tensor(filt["index"]), filt["quantization_parameters"]["scales"])
            )
    return found


@pytest.fixture(scope="module")
def tiny_qat(tmp_path_factory):
    """The tiny model, its rewrite calibrated on 4 images, and both converted to int8: the
    rewrite with its learned ranges, the float model by the converter's post-training
    calibration on the same images."""
    out = tmp_path_factory.mktemp("qat")
    model, images = _tiny_model(), _images()
    qat = quantize_aware(model, images)
    files = {}
    for name, m, learned in (("qat", qat, True), ("ptq", model, False)):
        saved = export_saved_model(m, str(out / name), *SIZE, labels=False)
        files[f"{name}_file"] = export_tflite(
            saved, str(out / f"{name}.tflite"), "int8",
            calibration=None if learned else (lambda: iter(images)), learned_ranges=learned,
        )  # fmt: skip
    return {"model": model, "qat": qat, "images": images, "out": out, **files}


def test_rewrite_folds_batch_norms_and_fuses_activations(tiny_qat):
    qat = tiny_qat["qat"]
    convs = {layer.name: layer for layer in qat.layers if isinstance(layer, QuantConv)}
    assert sorted(convs) == ["a_conv", "b_dwconv", "c_conv", "classifier", "d_conv"]
    assert convs["d_conv"].activation == "relu" and convs["d_conv"].batch_norm is None
    assert convs["a_conv"].activation == "relu6" and convs["a_conv"].batch_norm is not None
    assert convs["b_dwconv"].activation is None and convs["b_dwconv"].batch_norm is not None
    assert convs["c_conv"].batch_norm is None and convs["c_conv"].use_bias
    names = {layer.name for layer in qat.layers}
    assert not names & {"a_bn", "b_bn", "a_act"}  # folded and fused away
    # One range per tensor TFLite stores: the input, 5 convolutions, s (add + relu), the
    # pooling's two products, t's partial sum and sum, the concatenation.
    assert len(fake_quants(qat)) == 12
    # Without training the rewrite computes what the float model computes, up to int8
    float_out, qat_out = tiny_qat["model"](tiny_qat["images"]), qat(tiny_qat["images"])
    scale = float(np.ptp(float_out)) / 255
    assert np.abs(np.asarray(float_out) - np.asarray(qat_out)).max() < 12 * scale


def test_weights_are_quantised_as_the_converter_quantises_them(tiny_qat):
    """The converter folds the float model's batch norms and quantises per channel on its
    own (post-training); the QAT file's int8 filters and scales come out the same."""
    qat, ptq = _weights(tiny_qat["qat_file"]), _weights(tiny_qat["ptq_file"])
    assert len(qat) == len(ptq) == 5
    for (q_filter, q_scales), (p_filter, p_scales) in zip(qat, ptq, strict=True):
        np.testing.assert_allclose(q_scales, p_scales, rtol=1e-5)
        assert np.abs(q_filter.astype(int) - p_filter.astype(int)).max() <= 1
        assert np.mean(q_filter == p_filter) > 0.99


def test_litert_runs_the_simulated_arithmetic(tiny_qat):
    """LiteRT's int8 output is the simulation's to within a few quantisation steps, and
    every op of the learned-ranges file computes in int8."""
    assert float_ops(tiny_qat["qat_file"]) == []
    images = _images(8)  # not the calibration images
    simulated = np.asarray(logits_model(tiny_qat["qat"], *SIZE)(images))
    got = run_tflite(tiny_qat["qat_file"], images)
    step = (
        float(
            fake_quants(tiny_qat["qat"])[-1].range_max - fake_quants(tiny_qat["qat"])[-1].range_min
        )
        / 255
    )
    # float rounding against TFLite's fixed-point requantisation: outputs one step apart
    # are common (a value near a rounding boundary goes either way), a few more where
    # such differences meet
    assert np.abs(got - simulated).max() <= 4 * step
    assert np.abs(got - simulated).mean() <= 0.5 * step
    assert np.mean(got.argmax(-1) == simulated.argmax(-1)) > 0.98


def test_qat_model_round_trips_through_keras_file(tiny_qat, tmp_path):
    qat = tiny_qat["qat"]
    path = str(tmp_path / "qat.keras")
    qat.save(path)
    loaded = load_model(path)
    images = tiny_qat["images"]
    np.testing.assert_array_equal(np.asarray(loaded(images)), np.asarray(qat(images)))
    ranges = [(float(q.range_min), float(q.range_max)) for q in fake_quants(loaded)]
    assert ranges == [(float(q.range_min), float(q.range_max)) for q in fake_quants(qat)]


def test_qat_export_takes_int8_only_and_unsupported_layers_are_named(tiny_qat):
    with pytest.raises(ValueError, match="int8_io"):
        export(tiny_qat["qat"], str(tiny_qat["out"] / "x"), formats=("tflite",),
               quantize=("fp32",), input_size=SIZE)  # fmt: skip
    with pytest.raises(UserError, match="already"):
        quantize_aware(tiny_qat["qat"])
    inputs = keras.Input((*SIZE, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inputs)
    x = keras.layers.GroupNormalization(4, name="gn")(x)
    with pytest.raises(UserError, match=r"GroupNormalization layers in int8 \(gn\)"):
        quantize_aware(keras.Model(inputs, x, name="gn_net"))


def test_qat_command_fine_tunes_and_writes_int8_with_learned_ranges(
    trained, demo_cityscapes, tmp_path, capsys
):
    """`qat` on the trained demo run: it starts from the run's settings, fine-tunes, and
    writes int8 and int8_io files that LiteRT and MediaPipe run as the simulation said."""
    from kseg.data import Cityscapes
    from kseg.export.calibration import calibration_data
    from kseg.recipes import cityscapes
    from tests.conftest import FAST
    from tests.export.test_mediapipe import _segment

    checkpoint = os.path.join(trained, "best.keras")
    with open(checkpoint, "rb") as f:
        before = f.read()
    out = str(tmp_path / "run")
    cityscapes.main(["qat", "--data-dir", demo_cityscapes, "--checkpoint", checkpoint,
                     "--out", out, "--epochs", "1", "--limit", "4", *FAST])  # fmt: skip
    printed = capsys.readouterr().out
    with open(checkpoint, "rb") as f:
        assert f.read() == before  # the user's model is left as it was
    folder = os.path.join(out, "qat")
    assert os.path.exists(os.path.join(folder, "best.keras"))
    summary = open(os.path.join(folder, "export", "qat_vs_ptq.txt")).read()
    assert summary in printed
    scores = dict(re.findall(r"^  (.+?)\s+(\d+\.\d\d)$", summary, re.M))
    assert [k.split(" (")[0] for k in scores] == [
        "float", "int8 post-training", "int8 QAT", "int8_io QAT"
    ]  # fmt: skip
    qat = load_model(os.path.join(folder, "best.keras"))
    images, _ = calibration_data(Cityscapes(demo_cityscapes), "val", 4, 64, 128)
    simulated = np.asarray(logits_model(qat, 64, 128).predict(images, verbose=0))
    int8 = os.path.join(folder, "export", "contextnet_cn14_qat_int8.tflite")
    int8_io = os.path.join(folder, "export", "contextnet_cn14_qat_int8_io.tflite")
    for path in (int8, int8_io):
        assert float_ops(path) == []
        got = run_tflite(path, images)
        # The test's model trained two tiny epochs: many near-tied logits, and the share
        # moves with the training's numerics (93.4% to 96% seen; the demo runs of
        # bench/qat_accuracy.py: 99.7%). The logits themselves are held to the simulation
        # in test_litert_runs_the_simulated_arithmetic.
        assert np.mean(got.argmax(-1) == simulated.argmax(-1)) > 0.9
    # MediaPipe takes the uint8 image as it is (the input range is fixed to [0, 1])
    pixels = [np.round(im * 255).astype(np.uint8) for im in images]
    labels, masks = _segment(int8_io, pixels)
    assert list(labels) == list(Cityscapes.class_names)
    want = run_tflite(int8_io, np.stack(pixels).astype("float32") / 255).argmax(-1)
    assert np.mean(np.stack(masks) == want) > 0.999
