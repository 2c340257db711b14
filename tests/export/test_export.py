"""Every artefact runs in its own runtime and agrees with Keras; ODE models export on a
fixed grid; every registered model converts to builtins-only TFLite."""

import os
import re
from contextlib import nullcontext

import keras
import numpy as np
import pytest

from kseg.export import (
    ExportParityError,
    ExportSettingError,
    Parity,
    export,
    export_saved_model,
    export_tflite,
    table,
)
from kseg.export.ode import fixed_grid
from kseg.export.parity import check
from kseg.export.runtimes import run_tflite
from kseg.models import ContextNet, create_model
from kseg.ode import ODEBlock, ode_blocks
from tests.tiny_models import CHECKED, TINY

SIZE = (64, 128)


@pytest.fixture(scope="module")
def tiny_contextnet():
    keras.utils.set_random_seed(0)
    return ContextNet(num_classes=5, width_multiplier=0.25)


def test_all_formats_agree_with_keras_in_their_runtimes(artefacts):
    """The demo model's export in every format (the `artefacts` fixture)."""
    from ai_edge_litert.interpreter import Interpreter

    images = artefacts["images"]
    by_name = {a.format: a for a in artefacts["exported"]}
    assert sorted(by_name) == sorted(
        [
            "keras",
            "saved_model",
            "tflite_fp32",
            "tflite_fp16",
            "tflite_dynamic",
            "tflite_int8",
            "tflite_int8_io",
            "tflite_int8_mixed",
            "onnx",
        ]
    )
    for name in ("saved_model", "tflite_fp32", "onnx"):  # logits reach ~20: 1e-3 is 5e-5 of it
        assert by_name[name].parity.max_abs_logit_diff < 1e-3, name
        assert by_name[name].parity.argmax_agreement == 1.0, name
    # reduced precision: reported with the mIoU change (fp16 ~99.8% on this trained model)
    assert by_name["tflite_fp16"].parity.argmax_agreement >= 0.99
    for name in ("tflite_fp16", "tflite_dynamic", "tflite_int8"):
        assert "on 4 held-out images" in by_name[name].note, name  # not the calibration ones
    # per-class IoU of every file on the held-out images; fp32 files score as Keras does
    for name in ("saved_model", "tflite_fp32", "onnx"):
        np.testing.assert_array_equal(by_name[name].iou, by_name["keras"].iou)
    assert np.nanmean(by_name["tflite_int8"].iou) * 100 == pytest.approx(
        float(by_name["tflite_int8"].note.split("-> ")[1].split()[0]), abs=0.006
    )
    # selective int8: the report ranks ops by error; the two worst compute in float
    folder = os.path.dirname(artefacts["tflite"])
    report = open(os.path.join(folder, "int8_layer_errors.txt")).read().splitlines()
    errors = [float(line.split()[2]) for line in report[2:] if not line.startswith("...")]
    assert errors == sorted(errors, reverse=True) and len(errors) >= 10
    assert [line.endswith("kept in float") for line in report[2:5]] == [True, True, False]

    def float_ops(path):
        interpreter = Interpreter(model_path=path)
        tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
        return sum(
            tensors[op["outputs"][0]] == np.float32
            for op in interpreter._get_ops_details()
            if op["op_name"] not in ("DEQUANTIZE", "QUANTIZE")
        )

    assert float_ops(by_name["tflite_int8_mixed"].path) > float_ops(by_name["tflite_int8"].path)
    assert set(by_name["tflite_int8_mixed"].latency_s) == {1}  # what keeping float costs
    assert "mIoU" in by_name["tflite_int8_mixed"].note
    scores = open(os.path.join(folder, "per_class_iou.txt")).read()
    assert scores.startswith("IoU per class on 4 held-out images\nclass ")
    assert scores.splitlines()[2].startswith("road") and len(scores.splitlines()) == 2 + 19 + 1
    # int8_io: the same integer network without the quantise / dequantise at its edges, so
    # its dequantised logits are int8's; its file takes uint8 and gives int8
    io = Interpreter(model_path=by_name["tflite_int8_io"].path)
    assert io.get_input_details()[0]["dtype"] == np.uint8
    assert io.get_output_details()[0]["dtype"] == np.int8
    np.testing.assert_array_equal(
        run_tflite(by_name["tflite_int8_io"].path, images),
        run_tflite(by_name["tflite_int8"].path, images),
    )
    assert by_name["tflite_int8"].size_mb < 0.5 * by_name["tflite_fp32"].size_mb
    assert set(by_name["tflite_fp32"].latency_s) == {1}
    printed = table(artefacts["exported"], threads=(1,))
    assert "tflite_int8" in printed and "arg-max agreement" in printed
    # the SavedModel in this process: its `serve` function is its `serve` signature
    import tensorflow as tf

    loaded = tf.saved_model.load(by_name["saved_model"].path)
    image = tf.constant(images[:1])
    np.testing.assert_array_equal(
        loaded.serve(image)["logits"], loaded.signatures["serve"](image=image)["logits"]
    )
    reloaded = keras.saving.load_model(by_name["keras"].path)
    original = keras.saving.load_model(artefacts["keras"])
    np.testing.assert_allclose(reloaded(images)["logits"], original(images)["logits"], atol=1e-5)


@pytest.mark.parametrize("name", CHECKED)  # width variants: their base's graph (test_all_models)
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


def test_the_converter_is_tensorflows_from_saved_model_without_its_extra_load(tmp_path):
    """`tflite_converter` builds TensorFlow's SavedModel converter directly (one Python
    load of the SavedModel fewer); the second implementation is the public route, and
    the files are the same to the byte."""
    import tensorflow as tf

    from kseg.export.formats import tflite_converter

    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    saved = export_saved_model(keras.Model(inputs, outputs), str(tmp_path / "sm"), 16, 16)
    for mode in ("fp32", "dynamic"):
        public = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
        public.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if mode == "dynamic":
            public.optimizations = [tf.lite.Optimize.DEFAULT]
        assert tflite_converter(saved, mode).convert() == public.convert()
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x + 1}, input_signature=[tf.TensorSpec([1])])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"other": module.f})
    with pytest.raises(ValueError, match="no 'serve' signature"):
        tflite_converter(str(tmp_path / "other"), "fp32")


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
    x = ODEBlock(Derivative(), name="ode")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))


def test_ode_model_exports_on_a_fixed_grid_and_reports_its_error(tmp_path):
    model = _ode_model()
    with pytest.raises(ExportSettingError, match="on a fixed grid: --ode-steps auto"):
        export(model, str(tmp_path / "a"), formats=("tflite",), input_size=(16, 16))
    with pytest.warns(UserWarning, match="no calibration images: every file is checked on"):
        artefacts = export(
            model, str(tmp_path / "b"), formats=("keras", "tflite"), input_size=(16, 16),
            ode_steps=6, ode_method="rk4", threads=(1,),
        )  # fmt: skip
    assert table(artefacts).endswith("(parity on the fallback VOC photo)")  # no labels
    assert "(ODE blocks on rk4 x 6 steps: max|dlogit|" in table(artefacts)
    keras_art, tflite_art = artefacts
    assert "rk4 x 6 steps" in tflite_art.ode and "against the adaptive solve" in keras_art.ode
    assert tflite_art.parity.max_abs_logit_diff < 1e-4  # TFLite equals the fixed-grid Keras
    block = model.get_layer("ode")
    assert (block.method, block.steps) == ("dopri5", None)  # restored after the export


def test_command_line_names_the_adaptive_ode_blocks_without_a_traceback(tmp_path, capsys):
    from kseg.export.__main__ import main
    from kseg.models import SegNode

    path = str(tmp_path / "segnode.keras")
    SegNode(num_classes=3, width=4, modules=1, blocks=1, solver={"method": "dopri5"}).save(path)
    args = [path, "--out", str(tmp_path / "out"), "--formats", "tflite", "--input-size", "32x32"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: segnode's ODE blocks ['segnode_ode'] use adaptive solvers")
    assert "--ode-steps auto" in err and "Traceback" not in err and "\n" not in err
    assert not os.path.exists(tmp_path / "out" / "segnode_fp32.tflite")


def test_a_segnode_trained_on_its_grid_exports_as_it_is_or_on_another_grid(tmp_path):
    """SegNode's default solve is a fixed grid (rk4 x 2): it exports without --ode-steps,
    and another grid is measured against that one, not against an adaptive solve."""
    from kseg.models import SegNode

    model = SegNode(num_classes=3, width=4, modules=1, blocks=1)
    with pytest.warns(UserWarning, match="no calibration images"):
        as_is = export(model, str(tmp_path / "a"), formats=("tflite",), input_size=(32, 32),
                       threads=(1,))  # fmt: skip
    assert as_is[0].parity.max_abs_logit_diff < 1e-4 and "ODE blocks on" not in table(as_is)
    with pytest.warns(UserWarning, match="no calibration images"):
        coarser = export(model, str(tmp_path / "b"), formats=("tflite",), input_size=(32, 32),
                         ode_steps=1, threads=(1,))  # fmt: skip
    assert "ODE blocks on rk4 x 1 step: max|dlogit|" in table(coarser)
    assert "against the model's own grid (rk4 x 2 steps)" in table(coarser)
    assert model.solver.steps == 2  # restored after the export


def test_ode_steps_auto_takes_the_cheapest_grid_that_agrees_with_the_adaptive_solve(
    tmp_path, capsys
):
    from kseg.errors import UserError
    from kseg.export.ode import fixed_grid_error

    model = _ode_model()
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    artefacts = export(
        model, str(tmp_path), formats=("tflite",), input_size=(16, 16), images=images,
        ode_steps="auto", ode_agreement=0.999, threads=(1,),
    )  # fmt: skip
    grid = open(tmp_path / "ode_grid.txt").read()
    assert capsys.readouterr().out.startswith(grid.splitlines()[0])
    rows = [line.split() for line in grid.splitlines()[2:]]
    chosen = [r for r in rows if r[-1] == "chosen"]
    assert len(rows) == 12 and len(chosen) == 1
    method, steps = chosen[0][0], int(chosen[0][2])
    evaluations = [int(r[3]) for r in rows]
    assert evaluations == sorted(evaluations)  # cheapest first
    agreements = [float(r[4].rstrip("%")) for r in rows]
    first = rows.index(chosen[0])
    assert agreements[first] >= 99.9 and all(a < 99.9 for a in agreements[:first])
    # the chosen grid is the exported one, and its agreement is what the table says
    grid = f"{method} x {steps} step{'s' * (steps != 1)}"
    assert f"ODE blocks on {grid} (the cheapest" in table(artefacts)
    assert 100 * fixed_grid_error(model, images, steps, method)[1] == pytest.approx(
        agreements[first], abs=0.006
    )
    assert artefacts[0].parity.max_abs_logit_diff < 1e-4  # TFLite runs that grid
    with pytest.raises(UserError, match="no fixed grid reaches 100.1% agreement"):
        export(model, str(tmp_path / "x"), formats=("tflite",), input_size=(16, 16),
               images=images, ode_steps="auto", ode_agreement=1.001)  # fmt: skip


def test_keep_float_names_layers_or_takes_the_worst():
    from kseg.errors import UserError
    from kseg.export.selective import LayerError, resolve_keep_float

    errors = [
        LayerError("CONV_2D", "m_logits_1/m_1/deep_stem_act_1/Relu6;m/conv", 9.0, 1.0),
        LayerError("ADD", "m_logits_1/m_1/fusion_add_1/Add", 3.0, 0.5),
        LayerError("CONV_2D", "m_logits_1/m_1/head_conv_1/BiasAdd", 0.3, 0.1),
    ]
    assert [e.layer for e in errors] == ["deep_stem_act", "fusion_add", "head_conv"]
    assert resolve_keep_float(errors, "auto:2") == errors[:2]
    assert resolve_keep_float(errors, "auto") == errors
    assert resolve_keep_float(errors, "head_conv,fusion_add") == [errors[2], errors[1]]
    with pytest.raises(UserError, match="no quantised op of a layer 'nope'; layers: deep_stem"):
        resolve_keep_float(errors, ["nope"])


def test_parity_check_fails_with_a_clear_message():
    with pytest.raises(ExportParityError, match="needs at least 99.9% agreement"):
        check("tflite fp32", Parity(0.5, 0.95), 0.999)


def test_command_line_prunes_before_exporting_and_prints_the_table(
    tiny_contextnet, tmp_path, capsys
):
    from kseg.export.__main__ import main

    path = str(tmp_path / "m.keras")
    tiny_contextnet.save(path)
    out = tmp_path / "out"
    classes = tmp_path / "classes.txt"  # your own data's class list, with colours
    classes.write_text("sky 70 130 180\nbuilding 70 70 70\nroad 128 64 128\ncar\nperson\n")
    main(
        [
            path,
            "--out",
            str(out),
            "--formats",
            "tflite",
            "--input-size",
            "64x128",
            "--prune",
            "0.5",
            "--round-to",
            "1",
            "--labels",
            str(classes),
        ]
    )  # fmt: skip  (tiny: 8-channel groups)
    printed = capsys.readouterr().out
    assert "tflite_fp32" in printed and "1 thr s" in printed
    before, after = (
        int(n.replace(",", ""))
        for n in re.search(r"Pruned 50% of the filters: ([\d,]+) -> ([\d,]+)", printed).groups()
    )
    from kseg.utils import count_params

    assert before == count_params(tiny_contextnet) and after < 0.35 * before
    assert sorted(os.listdir(out)) == sorted(
        [f"{tiny_contextnet.name}_fp32.tflite", "labels.txt", "segment.py", "README.txt",
         ".kseg-export.json"]
    )  # fmt: skip
    assert (out / "labels.txt").read_text().split() == ["sky", "building", "road", "car", "person"]
    # the file holds the pruned weights (float32) and a graph that does not shrink
    size = os.path.getsize(out / f"{tiny_contextnet.name}_fp32.tflite")
    assert 4 * after < size < 4 * after + 150_000


def test_command_line_calibrates_int8_on_a_folder_of_unlabelled_photos(
    tiny_contextnet, demo_cityscapes, tmp_path, capsys
):
    """`--calib-data` on a folder of photos without labels (what a user deploying to a
    camera has): int8 is calibrated on the first --calib-images, read and resized as
    segment.py reads them, and every file is checked on the photos after them; no mIoU."""
    import glob
    import shutil

    from kseg.export.__main__ import main
    from kseg.predict.standalone import read_image, resize_bilinear

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in glob.glob(os.path.join(demo_cityscapes, "leftImg8bit", "*", "*", "*.png")):
        shutil.copy(path, photos)
    count = len(os.listdir(photos))
    path = str(tmp_path / "m.keras")
    tiny_contextnet.save(path)
    out = tmp_path / "out"
    main([path, "--out", str(out), "--formats", "tflite", "--quantize", "fp32,int8",
          "--input-size", "64x128", "--calib-data", str(photos), "--calib-images", "8",
          "--eval-images", "3"])  # fmt: skip
    printed = capsys.readouterr().out
    assert (f"Calibrating on 8 photos of {photos} and checking on 3 after them, resized to "
            "64x128 (no labels: no mIoU)") in printed and count >= 11  # fmt: skip
    assert "(parity on 3 held-out images)" in printed and "IoU per class" not in printed
    assert re.search(r"tflite_int8 .* arg-max agreement \d+\.\d+%\n", printed)
    # the held-out photos are what the deployed file sees: segment.py's resize of each
    from kseg.export.calibration import photo_data

    calib, held_out = photo_data(str(photos), 8, 3, 64, 128)
    third = sorted(glob.glob(str(photos / "*.png")))[10]
    np.testing.assert_allclose(
        held_out[2], resize_bilinear(read_image(third) / np.float32(255), 64, 128)
    )
    assert calib.shape == (8, 64, 128, 3) and 0 <= calib.min() and calib.max() <= 1


def test_an_export_replaces_only_what_kseg_wrote(tiny_contextnet, tmp_path):
    """An app's own labels.txt in --out stops the export before its work, untouched; a
    second export replaces the first's files; a file edited since kseg wrote it is refused,
    also when it is only known once the export has run, and nothing of that export moves
    in."""
    from kseg.errors import UserError
    from kseg.export.destination import Destination

    out = tmp_path / "assets"
    out.mkdir()
    (out / "labels.txt").write_text("my app's labels\n")
    images = np.random.default_rng(0).random((2, *SIZE, 3), np.float32)
    settings = dict(formats=("tflite",), input_size=SIZE, images=images, threads=(1,))
    with pytest.raises(UserError, match="already holds labels.txt, which kseg did not write"):
        export(tiny_contextnet, str(out), **settings)
    assert os.listdir(out) == ["labels.txt"]
    assert (out / "labels.txt").read_text() == "my app's labels\n"

    (out / "labels.txt").unlink()
    (first,) = export(tiny_contextnet, str(out), **settings)
    tflite = out / f"{tiny_contextnet.name}_fp32.tflite"
    assert first.path == str(tflite)
    written = sorted(os.listdir(out))
    assert written == sorted(
        [".kseg-export.json", "README.txt", "labels.txt", "segment.py", tflite.name]
    )
    export(tiny_contextnet, str(out), **settings)  # kseg's own files: replaced
    assert sorted(os.listdir(out)) == written
    (out / ".kseg-export.json").unlink()  # a folder exported before the record: its README
    export(tiny_contextnet, str(out), **settings)
    assert sorted(os.listdir(out)) == written

    (out / "segment.py").write_text("# my edits\n")
    with pytest.raises(UserError, match="already holds segment.py, which kseg did not write"):
        export(tiny_contextnet, str(out), **settings)
    # A file the export writes that no check knew of before its work: refused at the end.
    before = tflite.read_bytes()
    (out / "notes.txt").write_text("mine\n")
    destination = Destination(str(out))
    for name in ("notes.txt", tflite.name):
        (tmp_path / name).write_text("kseg's\n")
        os.replace(tmp_path / name, os.path.join(destination.stage, name))
    with pytest.raises(UserError, match="already holds notes.txt, which kseg did not write"):
        destination.publish()
    assert (out / "notes.txt").read_text() == "mine\n" and tflite.read_bytes() == before
    del destination
    assert sorted(os.listdir(out)) == sorted([*written, "notes.txt"])  # no staging left


def test_a_mixed_precision_model_exports_in_float32(tmp_path):
    """A model built under a mixed-precision policy (a training setting) computes in
    float16, which TFLite's builtins do not take: export writes the same model rebuilt in
    float32 with its weights, and checks the file against that; the policy is left as it
    was."""
    from kseg.export.precision import computes_in_float32, float32_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        mixed = ContextNet(num_classes=5, width_multiplier=0.25, aux_head=False)
        assert not computes_in_float32(mixed)
        rebuilt = float32_model(mixed)
        assert keras.config.dtype_policy().name == "mixed_float16"
        [tflite] = export(mixed, str(tmp_path), formats=("tflite",), quantize=("fp32",),
                          input_size=SIZE, threads=())  # fmt: skip
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert computes_in_float32(rebuilt) and type(rebuilt) is ContextNet
    for a, b in zip(mixed.weights, rebuilt.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    image = np.random.default_rng(1).random((1, *SIZE, 3)).astype("float32")
    np.testing.assert_allclose(
        run_tflite(tflite.path, image), np.asarray(rebuilt(image)), atol=1e-4
    )
    assert tflite.parity.argmax_agreement == 1.0


def test_an_export_takes_the_class_names_of_the_data_its_run_trained_on(trained, tmp_path):
    """Without --labels or --calib-data, the names and colours come from the data folder
    that the run's config.json (beside the .keras file) records; none for a file outside a
    run, or for a model of another class count."""
    from kseg.data import Cityscapes
    from kseg.export.__main__ import _trained_classes

    path = os.path.join(trained, "best.keras")
    model = keras.saving.load_model(path, compile=False)
    names, palette = _trained_classes(model, path)
    assert names == list(Cityscapes.class_names)
    np.testing.assert_array_equal(palette, Cityscapes.palette)
    assert _trained_classes(model, str(tmp_path / "elsewhere.keras")) == (None, None)
    five = ContextNet(num_classes=5, width_multiplier=0.25)
    assert _trained_classes(five, path) == (None, None)
