"""`python -m kseg.recipes.cifar10` and `python -m kseg.recipes.ode_features` end to end on
the embedded real images, with tiny widths."""

import csv
import json
import os

import numpy as np
import pytest

from kseg.recipes import cifar10, ode_features
from kseg.train.checkpoints import last_checkpoint

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
def trained(tmp_path_factory):
    """A tiny Res-ODE Net trained two epochs on the demo source (dopri5, the adjoint)."""
    out = str(tmp_path_factory.mktemp("cifar") / "res_ode_net")
    cifar10.main(["train", *TINY, "--model", "res_ode_net", "--epochs", "2", "--out", out])
    return out


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


def test_missing_cifar_folder_shows_the_layout_and_the_demo(tmp_path):
    with pytest.raises(SystemExit) as error:
        cifar10.main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")])
    message = str(error.value)
    assert "cifar-10-batches-py/{data_batch_1..5,test_batch}" in message
    assert "--demo" in message


def test_missing_tiny_imagenet_folder_shows_the_layout(trained, tmp_path):
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
    assert "val/val_annotations.txt" in str(error.value)
