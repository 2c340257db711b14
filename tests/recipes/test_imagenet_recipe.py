"""`python -m kseg.recipes.imagenet` end to end on the demo's JPEG files: SegNode
pre-trained with HRNet's classification head, evaluated, and its backbone handed to the
segmentation network."""

import json
import os
import shutil

import numpy as np
import pytest

import kseg
from kseg.recipes import imagenet
from kseg.train.init_from import init_from
from tests.conftest import built_once
from tests.data.test_imagenet import MORE, _imagenet
from tests.models.test_hrnet_torch import FIXTURES
from tests.models.torch_fixtures.torch_state import random_state, write_safetensors

SMALL = {"width": 4, "modules": 1, "blocks": 1}
TINY = ["--demo", "--train-images", "120", "--test-images", "40", "--crop", "32x32",
        "--batch-size", "16", "--width", "4", "--verbose", "0", "--no-tensorboard",
        "--seed", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, worker_id):
    """SegNode with HRNet's ImageNet head, one epoch of the demo, then evaluated."""

    def build(folder):
        imagenet.main([*TINY, "--model", "segnode", "--epochs", "1", "--out", folder])

    return built_once(tmp_path_factory, worker_id, "imagenet", build)


def test_the_demo_trains_and_evaluates_top_1_and_top_5(pretrained):
    results = json.load(open(os.path.join(pretrained, "results.json")))
    assert results["model"] == "segnode_cls" and results["protocol"] == "centre crop 32x32"
    assert results["images"] == 40 and 0 <= results["top5_error"] <= results["top1_error"] <= 1
    classes = open(os.path.join(pretrained, "classes.txt")).read().split()
    assert len(classes) == 5 and len(open(os.path.join(pretrained, "log.csv")).readlines()) == 2
    record = json.load(open(os.path.join(pretrained, "config.json")))
    details = {"crop": 32, "validation": "25 training images held out (5 a class)"}
    assert record["preset"]["imagenet"] == details


def test_its_backbone_starts_the_segmentation_network(pretrained, capsys):
    """Every weight of the segmentation SegNode but its head comes from the pre-trained
    one, whose classification head is reported unused."""
    import keras

    source = keras.saving.load_model(os.path.join(pretrained, "best.keras"), compile=False)
    model = kseg.models.SegNode(num_classes=19, **SMALL)
    report = init_from(model, os.path.join(pretrained, "best.keras"))
    assert report["missing"] and all(p.startswith("head_classifier") for p in report["missing"])
    assert len(report["loaded"]) + len(report["missing"]) == len(model.weights)
    assert report["unused"] and all(p.startswith("cls_") for p in report["unused"])
    assert "not used" in capsys.readouterr().out
    theirs = {w.path: w.numpy() for w in source.weights}
    for w in model.weights:
        if w.path in report["loaded"]:
            np.testing.assert_array_equal(w.numpy(), theirs[w.path])


def test_ten_crops_evaluate_and_mistakes_are_one_message(pretrained, tmp_path, capsys):
    imagenet.main(["evaluate", *TINY, "--ten-crop", "--model", "segnode", "--out", pretrained])
    results = json.load(open(os.path.join(pretrained, "results.json")))
    assert results["protocol"] == "10 crops 32x32" and results["images"] == 40
    data = _imagenet(tmp_path / "imagenet")
    for flags, said in [
        (["--model", "contextnet_cn14"], "contextnet_cn14 has no ImageNet classification head"),
        (["--model", "segnode_ocr"], "pre-train segnode, whose backbone is the same"),
        (["--model", "segnode", "--data-dir", str(tmp_path)], "has no train/ folder"),
        (["--model", "segnode", "--crop", "64x32"], "ImageNet crops are square: give N"),
    ]:
        with pytest.raises(SystemExit) as stop:
            imagenet.main(["train", "--data-dir", data, *flags, "--out", str(tmp_path / "r")])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    mine = tmp_path / "project"  # a folder of the user's with a classes.txt: left alone
    mine.mkdir()
    (mine / "classes.txt").write_text("mine\n")
    with pytest.raises(SystemExit):
        imagenet.main(["train", "--data-dir", data, "--model", "segnode", "--out", str(mine)])
    assert f"{mine / 'classes.txt'} is not a kseg run's" in capsys.readouterr().err
    assert os.listdir(mine) == ["classes.txt"] and (mine / "classes.txt").read_text() == "mine\n"


def test_hrnets_published_imagenet_classifier_evaluates_as_it_is(tmp_path, capsys):
    """`evaluate --checkpoint` an HRNet-Image-Classification checkpoint (the small HRNet's
    PyTorch weights, 5 classes): the model is built with the classification head as
    PyTorch computes it, and every weight comes from the file."""
    ref = np.load(FIXTURES / "classifier_reference.npz")
    path = tmp_path / "classifier.safetensors"
    write_safetensors(path, random_state(json.loads(str(ref["shapes"]))))
    data = _imagenet(tmp_path / "imagenet", more=MORE)
    small = '{"width": 4, "stage_modules": [1, 1, 1], "blocks": 1}'
    imagenet.main(["evaluate", "--data-dir", data, "--model", "hrnetv2_w48", "--model-kwargs",
                   small, "--checkpoint", str(path), "--crop", "64x64",
                   "--out", str(tmp_path / "run")])  # fmt: skip
    printed = capsys.readouterr().out
    assert "Built as PyTorch computes it" in printed
    results = json.load(open(tmp_path / "run" / "results.json"))
    assert results["model"] == "hrnetv2_w4_cls" and results["checkpoint"] == str(path)
    assert results["images"] == 2


def test_an_image_that_does_not_decode_is_named_or_left_out(pretrained, tmp_path, capsys):
    """A training image cut short stops training with one message naming it (after the
    decoder's own error, which names no file) and the epochs saved; an empty validation
    image stops evaluation so too, and --skip-bad-files leaves it out, counted."""
    data = tmp_path / "imagenet"
    shutil.copytree(os.path.join(pretrained, "demo-imagenet"), data)
    cut = sorted((data / "train").glob("*/*.JPEG"))[30]
    cut.write_bytes(cut.read_bytes()[:100])
    empty = sorted((data / "val").glob("*/*.JPEG"))[7]
    empty.write_bytes(b"")
    common = ["--data-dir", str(data), "--model", "segnode", "--width", "4", "--model-kwargs",
              json.dumps({"modules": 1, "blocks": 1}), "--crop", "32", "--verbose", "0",
              "--no-tensorboard"]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        imagenet.main(["train", *common, "--epochs", "1", "--batch-size", "16",
                       "--out", str(tmp_path / "run")])  # fmt: skip
    said = capsys.readouterr()
    assert stop.value.code == 2 and "decoding each of the 120 train images" in said.out
    assert f"{cut}: unreadable (TensorFlow's decoder: " in said.err
    assert said.err.count("unreadable") == 1 and "or pass --skip-bad-files to" in said.err
    assert f"0 of 1 epochs are saved in {tmp_path / 'run'}" in said.err

    evaluate = ["evaluate", *common, "--checkpoint", os.path.join(pretrained, "best.keras")]
    with pytest.raises(SystemExit) as stop:
        imagenet.main([*evaluate, "--out", str(tmp_path / "eval")])
    assert f"{empty}: unreadable (TensorFlow's decoder: Input is empty.)" in (
        capsys.readouterr().err
    )
    with pytest.warns(UserWarning, match="skipped 1 val image"):
        imagenet.main([*evaluate, "--skip-bad-files", "--out", str(tmp_path / "eval")])
    assert json.load(open(tmp_path / "eval" / "results.json"))["images"] == 40 - 1
