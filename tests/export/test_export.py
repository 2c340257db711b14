"""Every artefact runs in its own runtime and agrees with Keras; ODE models export on a
fixed grid; every registered model converts to builtins-only TFLite."""

import os
from contextlib import nullcontext

import keras
import numpy as np
import pytest

from kseg.export import ExportParityError, Parity, export, export_saved_model, export_tflite, table
from kseg.export.ode import fixed_grid
from kseg.export.parity import check
from kseg.export.runtimes import run_tflite
from kseg.models import ContextNet, create_model, list_models
from kseg.ode import ODEBlock, ode_blocks
from tests.tiny_models import TINY

SIZE = (64, 128)


@pytest.fixture(scope="module")
def tiny_contextnet():
    keras.utils.set_random_seed(0)
    return ContextNet(num_classes=5, width_multiplier=0.25)


def test_all_formats_agree_with_keras_in_their_runtimes(tiny_contextnet, tmp_path):
    from tests.helpers import voc_batch

    images, labels = voc_batch(*SIZE, num_classes=5)
    artefacts = export(
        tiny_contextnet, str(tmp_path), quantize=("fp32", "fp16", "dynamic", "int8", "int8_io"),
        input_size=SIZE, images=images, labels=labels, threads=(1,),
    )  # fmt: skip
    by_name = {a.format: a for a in artefacts}
    assert sorted(by_name) == sorted(
        [
            "keras",
            "saved_model",
            "tflite_fp32",
            "tflite_fp16",
            "tflite_dynamic",
            "tflite_int8",
            "tflite_int8_io",
            "onnx",
        ]
    )
    for name in ("saved_model", "tflite_fp32", "onnx"):
        assert by_name[name].parity.max_abs_logit_diff < 1e-4, name
        assert by_name[name].parity.argmax_agreement == 1.0, name
    assert by_name["tflite_fp16"].parity.argmax_agreement >= 0.999
    assert "mIoU" in by_name["tflite_int8"].note
    # int8_io: the same integer network without the quantise / dequantise at its edges, so
    # its dequantised logits are int8's; its file takes uint8 and gives int8
    from ai_edge_litert.interpreter import Interpreter

    io = Interpreter(model_path=by_name["tflite_int8_io"].path)
    assert io.get_input_details()[0]["dtype"] == np.uint8
    assert io.get_output_details()[0]["dtype"] == np.int8
    np.testing.assert_array_equal(
        run_tflite(by_name["tflite_int8_io"].path, images),
        run_tflite(by_name["tflite_int8"].path, images),
    )
    # int8 weights: smaller although this tiny model is mostly graph and quantisation data
    assert by_name["tflite_int8"].size_mb < 0.7 * by_name["tflite_fp32"].size_mb
    assert set(by_name["tflite_fp32"].latency_s) == {1}
    printed = table(artefacts, threads=(1,))
    assert "tflite_int8" in printed and "arg-max agreement" in printed
    reloaded = keras.saving.load_model(by_name["keras"].path)
    np.testing.assert_allclose(
        reloaded(images)["logits"], tiny_contextnet(images)["logits"], atol=1e-5
    )


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_converts_to_builtins_only_tflite(name, tmp_path):
    kwargs, _ = TINY[name]
    model = create_model(name, num_classes=3, **kwargs)
    multiple = getattr(model, "input_multiple", 1)
    h = max(multiple, 32)  # tiny U-Nets: 32x64, so no GroupNorm sees a 1x2 map
    w = 2 * h
    x = np.random.default_rng(0).random((1, h, w, 3)).astype("float32")
    with fixed_grid(model, steps=1, method="rk4") if ode_blocks(model) else nullcontext():
        saved = export_saved_model(model, str(tmp_path / "sm"), h, w, labels=False)
        out = model(x, training=False)
    path = export_tflite(saved, str(tmp_path / "m.tflite"))  # TFLITE_BUILTINS only
    want = out["logits"] if isinstance(out, dict) else out
    # 1e-3: GroupNorm over one-channel groups of small maps (the tiny U-Nets) amplifies
    # TFLite's different summation order to ~2e-4
    np.testing.assert_allclose(run_tflite(path, x), want, atol=1e-3)


class Derivative(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same")

    def build(self, shape):
        self.conv.build(shape)

    def call(self, y):
        return 0.5 * keras.ops.tanh(self.conv(y))


def _ode_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 1)(inputs)
    x = ODEBlock(Derivative(), method="dopri5", name="ode")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))


def test_ode_model_exports_on_a_fixed_grid_and_reports_its_error(tmp_path):
    model = _ode_model()
    with pytest.raises(ValueError, match="pass ode_steps"):
        export(model, str(tmp_path / "a"), formats=("tflite",), input_size=(16, 16))
    artefacts = export(
        model, str(tmp_path / "b"), formats=("keras", "tflite"), input_size=(16, 16),
        ode_steps=6, ode_method="rk4", threads=(1,),
    )  # fmt: skip
    keras_art, tflite_art = artefacts
    assert "rk4 x 6 steps" in keras_art.note and "against their adaptive solve" in keras_art.note
    assert tflite_art.parity.max_abs_logit_diff < 1e-4  # TFLite equals the fixed-grid Keras
    block = model.get_layer("ode")
    assert (block.method, block.steps) == ("dopri5", None)  # restored after the export


def test_parity_check_fails_with_a_clear_message():
    with pytest.raises(ExportParityError, match="needs at least 99.9% agreement"):
        check("tflite fp32", Parity(0.5, 0.95), 0.999)


def test_command_line_prints_the_table(tiny_contextnet, tmp_path, capsys):
    from kseg.export.__main__ import main

    path = str(tmp_path / "m.keras")
    tiny_contextnet.save(path)
    main([path, "--out", str(tmp_path / "out"), "--formats", "tflite", "--input-size", "64x128"])
    printed = capsys.readouterr().out
    assert "tflite_fp32" in printed and "1 thr s" in printed
    assert os.path.exists(tmp_path / "out" / f"{tiny_contextnet.name}_fp32.tflite")


def test_command_line_prunes_before_exporting(tiny_contextnet, tmp_path, capsys):
    from kseg.export.__main__ import main

    path = str(tmp_path / "m.keras")
    tiny_contextnet.save(path)
    sizes = {}
    for prune in ("0", "0.5"):
        out = tmp_path / f"out{prune}"
        args = [path, "--out", str(out), "--formats", "tflite", "--input-size", "64x128"]
        main([*args, "--prune", prune])
        sizes[prune] = os.path.getsize(out / f"{tiny_contextnet.name}_fp32.tflite")
    printed = capsys.readouterr().out
    assert "Pruned 50% of the filters" in printed
    # a quarter of the weights, plus the graph that does not shrink
    assert sizes["0.5"] < 0.5 * sizes["0"]
