"""The recipe command line end to end: train, evaluate, predict, and a `--strategy
mirrored` run on two logical CPUs killed and resumed."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from kseg.predict.outputs import OutputFolder
from kseg.recipes import cityscapes
from kseg.train.checkpoints import last_checkpoint, read_state
from kseg.train.metrics import mean_iou

FAST = ["--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64x128", "--verbose", "0",
        "--no-tensorboard", "--precise-bn-batches", "1"]  # fmt: skip


def _run(args, **kw):
    # unbuffered: a child killed mid-run has still written every line it printed
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kseg.recipes.cityscapes", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw,
    )  # fmt: skip


def _stop_in_the_second_epoch(monkeypatch, stop) -> None:
    """Makes the recipes' training call `stop()` before the second epoch's second step."""
    import keras

    from kseg.train import engine

    fit = engine.fit

    class Stop(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 3:
                stop()

    def stopped_fit(*args, extra_callbacks=(), **kwargs):
        return fit(*args, extra_callbacks=[*extra_callbacks, Stop()], **kwargs)

    monkeypatch.setattr(engine, "fit", stopped_fit)


def _error_line(err: str) -> str:
    """The one `error: ...` line of a command's stderr."""
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def _train_two_epochs(data_dir: str, out: str, capsys) -> tuple[int, str]:
    """(exit status, stderr) of a tiny two-epoch training run that stops with an error."""
    with pytest.raises(SystemExit) as exit_:
        cityscapes.main(["train", "--data-dir", data_dir, "--out", out, "--epochs", "2", *FAST])
    return exit_.value.code, capsys.readouterr().err


def test_help_lists_the_paper_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        cityscapes.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for text in ("0.045", "default 1000", "1024x2048", "section 3.1", "--strategy", "--demo"):
        assert text in " ".join(out.split()), text


def test_train_evaluate_predict(demo_cityscapes, trained, capsys):
    out = trained
    common = ["--data-dir", demo_cityscapes, "--out", out]
    assert last_checkpoint(out)[1] == 2 and os.path.exists(os.path.join(out, "best.keras"))
    cityscapes.main(["evaluate", *common])
    printed = capsys.readouterr().out
    result = json.load(open(os.path.join(out, "evaluation.json")))
    assert result["images"] == 4 and "mean IoU" in printed
    assert result["mean_iou"] == pytest.approx(mean_iou(np.array(result["confusion"])))
    iou, dice = result["iou"]["road"], result["dice"]["road"]
    assert dice == pytest.approx(2 * iou / (1 + iou))
    confusion = np.array(result["confusion"])  # road is class 0
    assert result["recall"]["road"] == pytest.approx(confusion[0, 0] / confusion[0].sum())
    assert result["precision"]["road"] == pytest.approx(confusion[0, 0] / confusion[:, 0].sum())
    assert result["pixel_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert (
        open(os.path.join(out, "evaluation.csv"))
        .read()
        .startswith("class,iou,dice,precision,recall\nroad,")
    )
    cityscapes.main(["predict", *common, "--limit", "2", "--label-ids"])
    folder = os.path.join(out, "predictions")
    names = sorted(set(os.listdir(folder)) - {OutputFolder.RECORD})  # the record: kseg.predict
    assert len(names) == 6  # colour PNG, overlay and labelIds for two images
    stem = names[0].rsplit("_", 1)[0]
    assert names[:3] == [f"{stem}_labelIds.png", f"{stem}_overlay.jpg", f"{stem}_pred.png"]
    # The run's predictions of a kseg that kept no record of its outputs are its own too.
    os.remove(os.path.join(folder, OutputFolder.RECORD))
    cityscapes.main(["predict", *common, "--limit", "2", "--label-ids"])
    assert len(OutputFolder(folder).known) == 6
    colour = Image.open(os.path.join(folder, f"{stem}_pred.png"))
    label_ids = np.asarray(Image.open(os.path.join(folder, f"{stem}_labelIds.png")))
    assert colour.mode == "P" and colour.size == (128, 64)
    from kseg.data import Cityscapes

    np.testing.assert_array_equal(  # labelIds map back to the colour PNG's train ids
        Cityscapes(demo_cityscapes).label_map[label_ids], np.asarray(colour)
    )


def test_evaluate_scores_the_exported_files_in_their_runtimes(
    demo_cityscapes, trained, artefacts, capsys
):
    common = ["evaluate", "--data-dir", demo_cityscapes, "--out", trained]
    cityscapes.main(common)
    keras_result = json.load(open(os.path.join(trained, "evaluation.json")))
    results = {}
    for name in ("tflite", "onnx", "int8"):
        cityscapes.main([*common, "--checkpoint", artefacts[name]])
        stem = os.path.splitext(os.path.basename(artefacts[name]))[0]
        results[name] = json.load(open(os.path.join(trained, f"evaluation_{stem}.json")))
        assert results[name]["checkpoint"] == artefacts[name]
    assert "tflite contextnet_cn14_int8.tflite" in capsys.readouterr().out
    for name in ("tflite", "onnx"):  # float files: the Keras model's confusion, pixel for pixel
        assert results[name]["confusion"] == keras_result["confusion"], name
    assert results["int8"]["images"] == keras_result["images"] == 4
    assert abs(results["int8"]["mean_iou"] - keras_result["mean_iou"]) < 0.1
    # the export's own per-class scores on the same validation images: a second reckoning
    by_name = {a.format: a for a in artefacts["exported"]}
    for name, result in (("keras", keras_result), ("tflite_int8", results["int8"])):
        want = [np.nan if v is None else v for v in result["iou"].values()]
        np.testing.assert_allclose(by_name[name].iou, want, atol=1e-9, err_msg=name)


def test_ctrl_c_in_an_epoch_says_what_is_saved_and_the_same_command_resumes_the_same_model(
    demo_cityscapes, tmp_path, capsys, monkeypatch
):
    """Ctrl-C (a KeyboardInterrupt) in the second epoch: one line saying how many epochs
    the run kept and status 130, no traceback; the same command resumes from there, and a
    command naming another model is refused instead of training the saved one. A resumed
    run given more epochs trains them on its schedule stretched to the new length, and
    into a file (not a terminal) `--verbose auto` logs a line an epoch. Resumed without
    its state.json and log.csv (a copied run), it scores best.keras again first."""
    import keras

    def ctrl_c():
        raise KeyboardInterrupt

    out = str(tmp_path / "run")
    args = ["train", "--data-dir", demo_cityscapes, "--out", out, "--epochs", "2", *FAST]
    _stop_in_the_second_epoch(monkeypatch, ctrl_c)
    with pytest.raises(SystemExit) as exit_:
        cityscapes.main(args)
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    saved = f"interrupted: 1 of 2 epochs are saved in {out}; the same command resumes from epoch 2"
    assert saved in err and "Traceback" not in err
    assert last_checkpoint(out)[1] == 1
    # resumed as another model: refused, the run and its record as they were
    record = open(os.path.join(out, "config.json")).read()
    with pytest.raises(SystemExit) as exit_:
        cityscapes.main([*args, "--model", "contextnet_cn12"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert (f"error: {out} holds a run of contextnet_cn14, and this command trains "
            "contextnet_cn12: resume that run with its --model") in err  # fmt: skip
    assert open(os.path.join(out, "config.json")).read() == record
    assert last_checkpoint(out)[1] == 1
    monkeypatch.undo()  # no more stops
    cityscapes.main(args)
    printed = capsys.readouterr().out
    assert f"Resuming {out}: 1 of 2 epochs done" in printed
    assert "other settings" not in printed  # the same command keeps the same schedule
    assert last_checkpoint(out)[1] == 2
    # A third epoch: the poly schedule, saved for 2 x 2 steps, is stretched to 3 x 2, its
    # rate at step 4 0.045 (1 - 4 / 6) ** 0.98 (kept as saved, the rate would be 0 from
    # step 4 on, and the third epoch would not train). The run is resumed as if copied
    # without state.json and log.csv: best.keras is scored again, and stays unless the
    # third epoch beats it.
    best = read_state(out)["best"]
    for name in ("state.json", "log.csv"):
        os.remove(os.path.join(out, name))
    cityscapes.main([*args, "--epochs", "3", "--verbose", "auto"])
    printed = capsys.readouterr().out
    scored = re.search(f"{re.escape(out)} has no state.json or log.csv: best.keras scored "
                       r"again on the validation data, val_logits_mean_iou (\d\.\d{4}), "
                       "the score later epochs must beat", printed)  # fmt: skip
    assert scored and float(scored.group(1)) == pytest.approx(best, abs=1e-4)
    third = read_state(out)["history"]["val_logits_mean_iou"]
    assert len(third) == 1 and read_state(out)["best"] == pytest.approx(max(best, third[0]))
    # --verbose auto into a file (not a terminal): one line an epoch, no progress bars
    assert re.search(r"^2/2 - \d+s - .*val_logits_mean_iou", printed, re.M) and "━" not in printed
    assert ("Resuming with other settings: the learning-rate schedule is this command's "
            "(poly from 0.045 over 6 steps; the checkpoint's was poly from 0.045 over 4 "
            "steps): 0 -> 0.01533 at step 4") in printed  # fmt: skip
    model = keras.saving.load_model(last_checkpoint(out)[0])
    assert model.optimizer.get_config()["learning_rate"]["config"]["total_steps"] == 6


def test_a_disk_that_fills_up_stops_training_with_what_is_saved(
    demo_cityscapes, tmp_path, capsys, monkeypatch
):
    """The disk fills up while the second epoch's checkpoint is written: one line with the
    free space, the epochs saved and how to resume, status 2, no traceback; the first
    epoch's checkpoint and state.json stay, and the half-written file is gone."""
    import errno

    from kseg.train import checkpoints

    atomic_write = checkpoints.atomic_write

    def filling(path, write):
        def half(tmp):
            with open(tmp, "wb") as f:
                f.write(bytes(1000))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        full = path.endswith("last-epoch0002.keras")
        return atomic_write(path, half if full else write)

    monkeypatch.setattr(checkpoints, "atomic_write", filling)
    out = str(tmp_path / "run")
    code, err = _train_two_epochs(demo_cityscapes, out, capsys)
    assert code == 2 and "Traceback" not in err
    said = _error_line(err)
    assert re.fullmatch(
        rf"error: no space left on the disk of {re.escape(out)} \(\d+ MiB free; an epoch's save "
        r"takes up to \d+ MiB more, its checkpoint and a copy as the best model\): 1 of 2 "
        rf"epochs are saved in {re.escape(out)}\. Free some space and run the same command: it "
        r"resumes from epoch 2",
        said,
    ), said
    assert last_checkpoint(out)[1] == read_state(out)["epoch"] == 1
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]


def test_running_out_of_memory_in_training_names_the_settings_to_lower(
    demo_cityscapes, tmp_path, capsys, monkeypatch, tensorflow_oom
):
    """TensorFlow's out-of-memory error in the second epoch (a real one: a 1 TiB tensor its
    allocator refuses, as a GPU's refuses a batch too large): one line naming what did not
    fit, the run's settings and the flags that lower its memory, the epochs saved and where
    the same command resumes; status 2, no traceback."""
    _stop_in_the_second_epoch(monkeypatch, tensorflow_oom)
    out = str(tmp_path / "run")
    code, err = _train_two_epochs(demo_cityscapes, out, capsys)
    assert code == 2 and "Traceback" not in err
    assert _error_line(err).startswith(
        "error: out of memory on CPU:0: a 274877906944 tensor (1,048,576 MiB) did not fit "
        "while training contextnet_cn14 on Cityscapes train ("
    )
    assert _error_line(err).endswith(
        "crop 64x128, batch 2: lower --batch-size or --crop, run each batch in pieces "
        "(--accumulate 2), or try --recompute-norm-act (or --mixed-precision float16 on a "
        f"GPU); 1 of 2 epochs are saved in {out}, and the same "
        "command with smaller settings resumes from epoch 2"
    )
    assert last_checkpoint(out)[1] == 1


def test_the_voc_recipes_demo_runs_on_real_images_in_the_devkits_layout(
    tmp_path, capsys, monkeypatch
):
    """`python -m kseg.recipes.voc --demo` (here one short epoch, without the export that
    test_the_demo_exports_its_model_to_verified_tflite checks): the demo's scenes in
    PASCAL VOC 2012's devkit layout with VOC's labels (car 7 and person 15 on background 0,
    palette PNGs, SBD's train_aug beside them), read by the VOC reader, trained on
    train_aug, evaluated by VOC's class names and predicted in VOC's colours."""
    from kseg.data import VOC
    from kseg.recipes import voc

    monkeypatch.setattr(type(voc.RECIPE), "export_demo", lambda recipe, runner: None)

    out = tmp_path / "demo"
    voc.main(["--demo", "--out", str(out), "--epochs", "1", *FAST])
    devkit = out / "demo-data" / "VOC2012"
    assert sorted(os.listdir(devkit)) == [
        "ImageSets", "JPEGImages", "SegmentationClass", "SegmentationClassAug"
    ]  # fmt: skip
    for folder in ("SegmentationClass", "SegmentationClassAug"):
        labels = np.concatenate([np.asarray(Image.open(p)).ravel()
                                 for p in (devkit / folder).iterdir()])  # fmt: skip
        assert set(np.unique(labels)) == {0, 7, 15}
    assert Image.open(next((devkit / "SegmentationClass").iterdir())).mode == "P"
    assert "on PASCAL VOC 2012 train_aug (96 images)" in capsys.readouterr().out
    result = json.load(open(out / "evaluation.json"))
    assert tuple(result["iou"]) == VOC.class_names
    # scored: the classes the labels hold (and any a briefly trained model predicts)
    assert {"background", "car", "person"} <= {c for c, v in result["iou"].items() if v is not None}
    pred = Image.open(next((out / "predictions").glob("*_pred.png")))
    assert pred.getpalette()[15 * 3 : 16 * 3] == [192, 128, 128]  # VOC's person


@pytest.mark.parametrize("name", ["cityscapes", "camvid", "voc", "lip", "pascal_context", "custom"])
def test_every_dataset_has_a_recipe_whose_missing_data_error_shows_the_layout(
    name, tmp_path, capsys
):
    import importlib

    from kseg.data import SEGMENTATION_DATASETS

    module = importlib.import_module(f"kseg.recipes.{name}")
    assert module.RECIPE.dataset == name and name in SEGMENTATION_DATASETS
    with pytest.raises(SystemExit) as exit_:
        module.main(["train", "--data-dir", str(tmp_path / "missing")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Expected layout" in err and "Traceback" not in err


def test_a_mirrored_pruning_run_killed_in_its_second_stage_resumes_from_it(
    demo_cityscapes, tmp_path, capsys
):
    """--prune-from 0.5 --prune-to 0.25 with `--strategy mirrored` on two logical CPUs in a
    process of its own: both stages on one MirroredStrategy with batch norm over both
    replicas (a strategy made afresh for the second stage paired its collective ops with
    the first stage's: "Shape mismatch in the collective instance"). The process is killed
    once the fine-tuning stage has written its first epoch; the same command then skips the
    finished stage and resumes the other from that epoch (here in this process, on one
    device: a checkpoint does not depend on the strategy that wrote it)."""
    import keras

    from kseg.utils.summary import count_params

    out = str(tmp_path / "run")
    wide, narrow = (os.path.join(out, f"width{w}") for w in ("0.5", "0.25"))
    args = ["train", "--data-dir", demo_cityscapes, "--out", out, "--epochs", "1",
            "--prune-from", "0.5", "--prune-to", "0.25", "--finetune-epochs", "2",
            *FAST]  # fmt: skip
    proc = _run([*args, "--strategy", "mirrored", "--logical-cpus", "2"])
    deadline = time.time() + 400
    while (read_state(narrow) or {}).get("epoch", 0) < 1:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    printed = proc.communicate()[0]
    assert printed.count("2 replica(s) with batch norm over all (") == 2  # --sync-bn auto
    assert last_checkpoint(wide)[1] == 1
    assert last_checkpoint(narrow)[1] == 1  # killed before the second epoch's checkpoint
    capsys.readouterr()
    cityscapes.main(args)  # the resumed run
    printed = capsys.readouterr().out
    assert f"{wide} already has 1 epochs (asked for 1); nothing to train" in printed
    assert f"Resuming {narrow}: 1 of 2 epochs done" in printed

    path, epoch = last_checkpoint(narrow)
    assert epoch == 2
    assert int(keras.saving.load_model(path).optimizer.iterations) == 2 * 2  # carried over
    lines = open(os.path.join(narrow, "log.csv")).read().strip().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]][-1] == 1  # epochs 0..1 logged
    assert len(read_state(narrow)["history"]["loss"]) >= 2
    summary = json.load(open(os.path.join(out, "pruning.json")))["stages"]
    assert [s["width"] for s in summary] == [0.5, 0.25]
    params = [s["params"] for s in summary]
    assert params[0] > params[1]
    final = keras.saving.load_model(os.path.join(out, "best.keras"), compile=False)
    assert count_params(final) == params[1] and final.input_multiple == 32
    first_conv = final.get_layer("deep_stem_conv").kernel.shape[-1]
    assert first_conv == 8  # make_divisible(32 * 0.5) = 16, pruned by half


def test_the_demo_exports_its_model_to_verified_tflite(demo_cityscapes, trained, capsys):
    from kseg.recipes.cli import parse
    from kseg.recipes.runner import Runner

    out = trained
    common = ["--data-dir", demo_cityscapes, "--out", out]
    config = parse(cityscapes.RECIPE, ["evaluate", *common, "--crop", "64x128"])
    cityscapes.RECIPE.export_demo(Runner(cityscapes.RECIPE, config))
    printed = capsys.readouterr().out
    for mode in ("fp32", "int8"):
        assert os.path.exists(os.path.join(out, "export", f"contextnet_cn14_{mode}.tflite"))
        assert f"tflite_{mode}" in printed
    assert "mIoU" in printed  # int8's change on the validation images


def test_the_demo_exports_an_ode_model_on_the_grid_it_chooses(demo_cityscapes, tmp_path, capsys):
    """`train --demo --model segnode` ended in an error at its export step (adaptive ODE
    blocks need a fixed grid). The demo now takes the cheapest grid that agrees with the
    adaptive solve, or the closest one: this untrained SegNode's near-tied logits keep
    every grid below 99.5%."""
    from kseg.models import SegNode
    from kseg.recipes.cli import parse
    from kseg.recipes.runner import Runner

    path = str(tmp_path / "segnode.keras")
    SegNode(num_classes=19, width=4, modules=1, blocks=1, solver={"method": "dopri5"}).save(path)
    out = str(tmp_path / "run")
    args = ["evaluate", "--data-dir", demo_cityscapes, "--out", out, "--checkpoint", path,
            "--crop", "64x128"]  # fmt: skip
    cityscapes.RECIPE.export_demo(Runner(cityscapes.RECIPE, parse(cityscapes.RECIPE, args)))
    printed = capsys.readouterr().out
    assert "agreement (none: the closest)" in printed
    grid = re.compile(r"(euler|midpoint|rk4) x \d+ ")
    rows = [line.split() for line in printed.splitlines() if grid.match(line)]
    chosen = [r for r in rows if r[-1] == "chosen"]
    assert len(rows) == 12 and len(chosen) == 1
    best = max(float(r[4].rstrip("%")) for r in rows)
    assert float(chosen[0][4].rstrip("%")) == best  # the closest grid, then the cheapest
    method, steps = chosen[0][0], chosen[0][2]
    grid = f"{method} x {steps} step{'s' * (steps != '1')}"
    assert f"ODE blocks on {grid}: max|dlogit|" in printed
    for mode in ("fp32", "int8"):
        assert os.path.exists(os.path.join(out, "export", f"segnode_{mode}.tflite"))
        assert f"tflite_{mode}" in printed


def test_recompute_norm_act_reaches_the_training_loop(demo_cityscapes, tmp_path, monkeypatch):
    """`--recompute-norm-act` is what the recipe hands `fit` (tests/layers/test_recompute.py
    has what `fit` does with it); without it, the default: off."""
    from kseg.train import engine

    class Stop(Exception):
        pass

    seen = []

    def fit(*args, **kwargs):
        seen.append(kwargs["recompute_norm_act"])
        raise Stop

    monkeypatch.setattr(engine, "fit", fit)
    for flags in ([], ["--recompute-norm-act"]):
        out = str(tmp_path / f"run{len(flags)}")
        with pytest.raises(Stop):
            cityscapes.main(["train", "--data-dir", demo_cityscapes, "--out", out, "--epochs",
                             "1", *FAST, *flags])  # fmt: skip
    assert seen == [False, True]


def test_the_camvid_recipes_demo_runs_on_real_images_in_camvids_layout(
    tmp_path, capsys, monkeypatch
):
    """`python -m kseg.recipes.camvid --demo` (here one short epoch, without the export
    that test_the_demo_exports_its_model_to_verified_tflite checks): the demo's scenes
    written in SegNet's CamVid layout with CamVid's labels (sky 0, building 1, road 3, car 8,
    pedestrian 9, void 11), read by the CamVid reader, trained on, evaluated by CamVid's
    class names and predicted; `evaluate --split test` scores the test split."""
    from kseg.recipes import camvid

    monkeypatch.setattr(type(camvid.RECIPE), "export_demo", lambda recipe, runner: None)

    out = tmp_path / "demo"
    camvid.main(["--demo", "--out", str(out), "--epochs", "1", *FAST])
    data = out / "demo-data"
    assert sorted(os.listdir(data)) == [
        ".complete", "test", "testannot", "train", "trainannot", "val", "valannot"
    ]  # fmt: skip
    labels = np.concatenate(
        [np.asarray(Image.open(p)).ravel() for p in (data / "valannot").iterdir()]
    )
    assert set(np.unique(labels)) <= {0, 1, 3, 8, 9, 11} and {0, 1, 3, 8, 9} <= set(labels)
    result = json.load(open(out / "evaluation.json"))
    from kseg.data import CamVid

    assert tuple(result["iou"]) == CamVid.class_names and result["iou"]["sky"] > 0
    assert "CamVid layout: train/, trainannot/, val/, test/" in capsys.readouterr().out
    camvid.main(["evaluate", "--split", "test", "--out", str(out), "--data-dir", str(data)])
    assert f"CamVid test, {len(os.listdir(data / 'test'))} images" in capsys.readouterr().out
