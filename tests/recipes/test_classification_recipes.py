"""The classification recipes (cifar10, cifar100, svhn) and `python -m
kseg.recipes.ode_features` end to end, on the embedded real images or on files in the
official layouts, with tiny widths."""

import csv
import json
import os

import numpy as np
import pytest

from kseg.data.classification_pipeline import channel_statistics, split_holdout
from kseg.recipes import cifar10, cifar100, ode_features, svhn
from kseg.train.checkpoints import last_checkpoint
from tests.conftest import built_once

TINY = [
    "--demo",
    "--width",
    "8",
    "--train-images",
    "120",
    "--test-images",
    "60",
    "--batch-size",
    "32",
    "--steps-images",
    "6",
    "--verbose",
    "0",
    "--no-tensorboard",
    "--seed",
    "0",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, worker_id):
    """A tiny Res-ODE Net trained two epochs on the demo source (dopri5, the adjoint)."""

    def build(folder):
        out = os.path.join(folder, "res_ode_net")
        cifar10.main(["train", *TINY, "--model", "res_ode_net", "--epochs", "2", "--out", out])

    return os.path.join(built_once(tmp_path_factory, worker_id, "cifar", build), "res_ode_net")


def test_train_writes_checkpoints_and_preprocessing_then_resumes(trained, capsys):
    assert last_checkpoint(trained)[1] == 2
    pre = json.load(open(os.path.join(trained, "preprocessing.json")))
    assert pre["image_size"] == [32, 32] and len(pre["mean"]) == 3
    assert "demo" in pre["source"]
    log = open(os.path.join(trained, "log.csv")).read().splitlines()
    assert log[0].startswith("epoch") and "val_accuracy" in log[0] and len(log) == 3
    cifar10.main(["train", *TINY, "--model", "res_ode_net", "--epochs", "2", "--out", trained])
    assert "nothing to train" in capsys.readouterr().out


def test_evaluate_reports_test_error_and_solver_steps(trained, capsys):
    cifar10.main(["evaluate", *TINY, "--model", "res_ode_net", "--out", trained])
    results = json.load(open(os.path.join(trained, "results.json")))
    assert results["test_images"] == 60 and 0 <= results["test_error"] <= 1
    solver = results["solver"]
    assert solver["images"] == 6 and solver["accepted_steps_mean"] >= 1
    assert solver["nfe_mean"] > solver["accepted_steps_mean"]
    assert os.path.exists(os.path.join(trained, "solver_steps.png"))
    assert "test error" in capsys.readouterr().out


def test_transfer_protocol_on_the_embedded_target(trained, tmp_path, capsys):
    out = str(tmp_path / "features")
    ode_features.main(
        [
            "--models",
            os.path.join(trained, "best.keras"),
            "--out",
            out,
            "--limit",
            "150",
            "--cs",
            "0.1,1",
            "--steps-images",
            "4",
        ]
    )
    rows = list(csv.DictReader(open(os.path.join(out, "transfer.csv"))))
    assert [float(r["position"]) for r in rows] == pytest.approx(np.arange(21) * 0.05)
    assert rows[9]["feature"] == "t=0.45"
    accuracies = [float(r["cv_accuracy"]) for r in rows]
    assert all(0 <= a <= 1 for a in accuracies) and max(accuracies) > 0.3  # chance: 0.1-0.2
    assert "digits" in rows[0]["target"]
    steps = json.load(open(os.path.join(out, "solver_steps.json")))
    assert steps["res_ode_net"]["images"] == 4
    for name in ("transfer.png", "solver_steps-res_ode_net.png"):
        assert os.path.getsize(os.path.join(out, name)) > 1000
    assert "best linear-SVM accuracy" in capsys.readouterr().out


def test_missing_cifar_folder_shows_the_layout_and_the_demo(tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        cifar10.main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert "cifar-10-batches-py/{data_batch_1..5,test_batch}" in message
    assert "--demo" in message


def test_missing_tiny_imagenet_folder_shows_the_layout(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        ode_features.main(
            [
                "--models",
                os.path.join(trained, "best.keras"),
                "--target-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert error.value.code == 2
    assert "val/val_annotations.txt" in capsys.readouterr().err


def test_choicenet_demo_holds_out_validation_images_and_evaluates(tmp_path, capsys):
    out = str(tmp_path / "choicenet")
    args = [*TINY, "--model", "choicenet_30", "--width", "4", "--epochs", "1", "--out", out,
            "--model-kwargs", '{"modules": 1}', "--no-augment"]  # fmt: skip
    cifar100.main(args)  # --demo and no command: train, then evaluate
    pre = json.load(open(os.path.join(out, "preprocessing.json")))
    assert pre["validation"] == "12 images held out of the training set"  # 10% of 120
    assert pre["augmentation"] == "none"  # Table 1's C100 column (the preset: crop_flip)
    results = json.load(open(os.path.join(out, "results.json")))
    assert results["test_images"] == 60 and "solver" not in results
    assert "held out" in capsys.readouterr().out


def test_svhn_trains_on_train_and_extra_without_augmentation(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    sizes = {"train": 30, "extra": 10, "test": 8}
    for split, n in sizes.items():
        savemat(
            tmp_path / f"{split}_32x32.mat",
            {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
             "y": rng.integers(1, 11, (n, 1))},
        )  # fmt: skip
    out = str(tmp_path / "run")
    svhn.main(["train", "--data-dir", str(tmp_path), "--model", "choicenet_30", "--width", "4",
               "--epochs", "1", "--batch-size", "16", "--verbose", "0", "--no-tensorboard",
               "--out", out, "--model-kwargs", '{"modules": 1}'])  # fmt: skip
    pre = json.load(open(os.path.join(out, "preprocessing.json")))
    assert pre["validation"] == "4 images held out of the training set"  # 10% of 30 + 10
    assert pre["augmentation"] == "none" and pre["source"] == "SVHN"
    images = np.concatenate([svhn.RECIPE.load(str(tmp_path), s)[0] for s in ("train", "extra")])
    x = images / 255.0
    np.testing.assert_allclose(pre["mean"], x.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(pre["std"], x.std(axis=(0, 1, 2)), rtol=1e-9)


def test_holdout_split_is_fixed_disjoint_and_sized():
    images = np.arange(50)[:, None, None, None].astype(np.uint8)
    labels = np.arange(50)
    (train, _), (val, val_labels) = split_holdout(images, labels, 0.2)
    assert len(val) == 10 and len(train) == 40
    assert not set(train.ravel()) & set(val.ravel())
    np.testing.assert_array_equal(val.ravel(), val_labels)
    again = split_holdout(images, labels, 10)[1][1]
    np.testing.assert_array_equal(again, val_labels)  # same images when a run resumes
    with pytest.raises(ValueError, match="cannot hold out"):
        split_holdout(images, labels, 50)


def test_channel_statistics_match_numpy():
    images = np.random.default_rng(1).integers(0, 256, (9000, 4, 4, 3), dtype=np.uint8)
    mean, std = channel_statistics(images)  # three chunks
    x = images / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-10)
    np.testing.assert_allclose(std, x.std(axis=(0, 1, 2)), rtol=1e-8)
