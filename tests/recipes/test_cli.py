"""The recipe command line end to end: train, evaluate, predict, resume after a kill,
and `--strategy mirrored` on two logical CPUs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from kseg.recipes import cityscapes
from kseg.train.checkpoints import last_checkpoint, read_state
from kseg.train.metrics import mean_iou

FAST = ["--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64x128", "--verbose", "0",
        "--no-tensorboard", "--precise-bn-batches", "1"]  # fmt: skip


def _run(args, **kw):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "kseg.recipes.cityscapes", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw,
    )  # fmt: skip


def test_help_lists_the_paper_defaults():
    out = subprocess.run(
        [sys.executable, "-m", "kseg.recipes.cityscapes", "--help"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for text in ("0.045", "default 1000", "1024x2048", "section 3.1", "--strategy", "--demo"):
        assert text in " ".join(out.split()), text


def test_train_evaluate_predict(demo_cityscapes, tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["--data-dir", demo_cityscapes, "--out", out]
    cityscapes.main(["train", *common, "--epochs", "2", *FAST])
    assert last_checkpoint(out)[1] == 2 and os.path.exists(os.path.join(out, "best.keras"))
    cityscapes.main(["evaluate", *common])
    printed = capsys.readouterr().out
    result = json.load(open(os.path.join(out, "evaluation.json")))
    assert result["images"] == 4 and "mean IoU" in printed
    assert result["mean_iou"] == pytest.approx(mean_iou(np.array(result["confusion"])))
    assert open(os.path.join(out, "evaluation.csv")).read().startswith("class,iou\nroad,")
    cityscapes.main(["predict", *common, "--limit", "2", "--label-ids"])
    folder = os.path.join(out, "predictions")
    names = sorted(os.listdir(folder))
    assert len(names) == 6  # colour PNG, overlay and labelIds for two images
    stem = names[0].rsplit("_", 1)[0]
    assert names[:3] == [f"{stem}_labelIds.png", f"{stem}_overlay.jpg", f"{stem}_pred.png"]
    colour = Image.open(os.path.join(folder, f"{stem}_pred.png"))
    label_ids = np.asarray(Image.open(os.path.join(folder, f"{stem}_labelIds.png")))
    assert colour.mode == "P" and colour.size == (128, 64)
    from kseg.data import Cityscapes

    np.testing.assert_array_equal(  # labelIds map back to the colour PNG's train ids
        Cityscapes(demo_cityscapes).label_map[label_ids], np.asarray(colour)
    )


def test_resume_after_a_kill_continues_from_the_last_epoch(demo_cityscapes, tmp_path):
    out = str(tmp_path / "run")
    args = ["train", "--data-dir", demo_cityscapes, "--out", out, "--epochs", "6", *FAST]
    proc = _run(args)
    deadline = time.time() + 300
    while (read_state(out) or {}).get("epoch", 0) < 1:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = last_checkpoint(out)[1]
    assert 1 <= done < 6
    resumed = _run(args)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert f"Resuming {out}: {done} of 6 epochs done" in output
    import keras

    path, epoch = last_checkpoint(out)
    assert epoch == 6
    model = keras.saving.load_model(path)
    assert int(model.optimizer.iterations) == 6 * 2  # the step count carried over
    lines = open(os.path.join(out, "log.csv")).read().strip().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]][-1] == 5  # epochs 0..5 logged
    assert len(read_state(out)["history"]["loss"]) >= 6


def test_mirrored_strategy_on_two_logical_cpus(demo_cityscapes, tmp_path):
    out = str(tmp_path / "run")
    proc = _run(["train", "--data-dir", demo_cityscapes, "--out", out, "--epochs", "1",
                 "--strategy", "mirrored", "--logical-cpus", "2", *FAST])  # fmt: skip
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    assert "2 replica(s)" in output
    assert last_checkpoint(out)[1] == 1


@pytest.mark.parametrize("name", ["cityscapes", "camvid", "voc", "lip", "pascal_context"])
def test_every_dataset_has_a_recipe_whose_missing_data_error_shows_the_layout(name, tmp_path):
    import importlib

    from kseg.data import SEGMENTATION_DATASETS, DatasetLayoutError

    module = importlib.import_module(f"kseg.recipes.{name}")
    assert module.RECIPE.dataset == name and name in SEGMENTATION_DATASETS
    with pytest.raises(DatasetLayoutError, match="Expected layout"):
        module.main(["train", "--data-dir", str(tmp_path / "missing")])
