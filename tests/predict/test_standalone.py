"""The export folder's `segment.py` (kseg.predict.standalone): it runs in a virtual
environment that holds only ai-edge-litert, numpy and pillow, matches Keras and
`kseg.predict`, and benchmarks with XNNPACK on and off."""

import glob
import importlib.metadata as metadata
import os
import subprocess
import venv

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kseg.predict import standalone
from tests.helpers import masks_in


def _requirements(name: str) -> list[str]:
    from packaging.requirements import Requirement

    found = []
    for text in metadata.distribution(name).requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(requirement.name)
    return found


def fresh_venv(root: str, packages=("ai-edge-litert", "numpy", "pillow")) -> str:
    """A new virtual environment holding only `packages` and what they require, linked
    from this environment's installed files (CI has no network to download them)."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    site = glob.glob(os.path.join(root, "lib", "python3*", "site-packages"))[0]
    todo, seen = list(packages), set()
    while todo:
        name = todo.pop()
        dist = metadata.distribution(name)
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        todo += _requirements(name)
        tops = {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            target = os.path.join(site, top)
            if not os.path.lexists(target):
                os.symlink(dist.locate_file(top), target)
    return os.path.join(root, "bin", "python")


@pytest.fixture(scope="module")
def litert_python(tmp_path_factory):
    python = fresh_venv(str(tmp_path_factory.mktemp("litert-venv")))
    for absent in ("tensorflow", "kseg", "keras"):
        probe = subprocess.run([python, "-I", "-c", f"import {absent}"], capture_output=True)
        assert probe.returncode != 0, f"{absent} is importable in the fresh environment"
    return python


def test_segment_py_alone_matches_keras_and_kseg_predict(
    artefacts, demo_cityscapes, litert_python, tmp_path
):
    from kseg.predict.__main__ import main as kseg_predict

    bundle = os.path.dirname(artefacts["tflite"])
    script = os.path.join(bundle, "segment.py")
    with open(os.path.join(bundle, "README.txt")) as f:
        readme = f.read()
    # the table measured at export: each file with its size on disk
    for key, name in (("tflite", "tflite_fp32"), ("int8", "tflite_int8"), ("onnx", "onnx")):
        size = f"{os.path.getsize(artefacts[key]) / 2**20:7.2f}"
        assert f"{name:17s} {size}" in readme, (name, readme)
    photos = tmp_path / "photos"
    (photos / "large").mkdir(parents=True)
    sources = sorted(glob.glob(os.path.join(demo_cityscapes, "leftImg8bit", "val", "*", "*.png")))
    for path in sources:
        Image.open(path).save(photos / os.path.basename(path))
    # A larger image: resized to the file's 64x128 and its logits back to 96x160
    Image.open(sources[0]).resize((160, 96)).save(photos / "large" / "big.png")

    runs = {}
    for name, command in (
        ("segment.py", [litert_python, "-I", script]),
        ("kseg.predict", None),
    ):
        out = str(tmp_path / name)
        argv = [artefacts["tflite"], str(photos), "--out", out, "--quiet", "--label-ids"]
        if command is None:
            kseg_predict(argv)
        else:
            done = subprocess.run([*command, *argv], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert f"Segmented {len(sources) + 1} images" in done.stdout
        runs[name] = masks_in(out)
    assert sorted(runs["segment.py"]) == sorted(runs["kseg.predict"])
    for key, mask in runs["segment.py"].items():  # the same resize, runtime and file
        np.testing.assert_array_equal(mask, runs["kseg.predict"][key], err_msg=key)
    assert runs["segment.py"]["large/big_pred.png"].shape == (96, 160)
    label_ids = np.asarray(Image.open(tmp_path / "segment.py" / "large" / "big_labelIds.png"))
    assert set(np.unique(label_ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                                         27, 28, 31, 32, 33}  # fmt: skip

    # Against Keras at the export size: arg-max agreement >= 99.9%
    from kseg.predict.backends import open_model
    from kseg.predict.predictor import Predictor

    keras_model = Predictor(open_model(artefacts["keras"]))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sources]
    want = [logits.argmax(-1) for logits in keras_model.logits(images)]
    got = [runs["segment.py"][os.path.basename(p).replace(".png", "_pred.png")] for p in sources]
    agreement = np.mean([np.mean(g == w) for g, w in zip(got, want, strict=True)])
    assert agreement >= 0.999, agreement


def test_segment_py_benchmarks_with_xnnpack_on_and_off(artefacts, litert_python):
    script = os.path.join(os.path.dirname(artefacts["tflite"]), "segment.py")
    done = subprocess.run(
        [litert_python, "-I", script, artefacts["int8"], "--benchmark", "--threads", "1",
         "--runs", "5", "--warmup", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    # threads, XNNPACK (as the interpreter applied it), init, p50, p90, mean, peak, delta MB
    assert [r[:2] for r in rows] == [["1", "on"], ["1", "off"]], done.stdout
    for row in rows:
        init, p50, p90, mean, peak, delta = map(float, row[2:])
        assert 0 < p50 <= p90 and mean > 0 and init > 0
        # a fresh process without TensorFlow: tens of MB, of which the interpreter adds some
        assert peak > delta > 0 and peak < 200


def test_kseg_export_benchmark_names_a_missing_file(capsys):
    from kseg.export.benchmark import main

    with pytest.raises(SystemExit) as exit_:
        main(["missing.tflite"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "error: missing.tflite: no such file"


# The last two are resized in bands of output rows (52 rows, and 1).
@pytest.mark.parametrize(
    "size, channels", [((64, 128), 5), ((96, 160), 5), ((17, 31), 5), ((200, 90), 5),
                       ((1500, 2000), 5), ((20, 2000), 300)]
)  # fmt: skip
def test_resize_is_tf_image_resize(size, channels):
    x = np.random.default_rng(0).random((45, 77, channels)).astype(np.float32)
    want = tf.image.resize(x, size).numpy()
    np.testing.assert_allclose(standalone.resize_bilinear(x, *size), want, atol=1e-5)


@pytest.mark.parametrize("size", [(45, 77), (17, 31), (1500, 2000), (3, 4000)])
def test_resized_labels_are_the_arg_max_of_the_resized_logits(size):
    """Labels straight from the model's logits, a band of rows at a time, equal the arg-max
    of the whole resized logits, pixel for pixel (same size: the plain arg-max)."""
    logits = np.random.default_rng(1).normal(size=(45, 77, 19)).astype(np.float32)
    want = standalone.resize_bilinear(logits, *size).argmax(-1)
    labels = standalone.resized_labels(logits, *size)
    assert labels.dtype == np.uint8 and labels.shape == size
    np.testing.assert_array_equal(labels, want)


@pytest.mark.parametrize("probabilities", [False, True])
def test_writer_takes_logits_at_the_model_size(tmp_path, probabilities):
    """`ImageWriter.write` with logits at the model's size writes the files, byte for
    byte, that the logits resized to the image first give: labels, overlay, label ids and
    (when asked for, the labels then taken from them) probabilities."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)
    small = rng.normal(size=(32, 64, 19)).astype(np.float32)
    written = {}
    for name, logits in (("small", small), ("full", standalone.resize_bilinear(small, 90, 150))):
        folder = str(tmp_path / name)
        writer = standalone.ImageWriter(
            folder, standalone.default_palette(19), label_ids=True, probabilities=probabilities
        )
        writer.check(["photo"])
        writer.write("photo", image, logits)
        writer.close()
        written[name] = {f: open(os.path.join(folder, f), "rb").read()
                         for f in writer.names("photo")}  # fmt: skip
    assert len(written["small"]) == 3 + probabilities and written["small"] == written["full"]


def test_colours_and_label_ids_are_keras_side_ones():
    import imgviz

    from kseg.data.cityscapes import Cityscapes

    np.testing.assert_array_equal(standalone.label_colormap(), imgviz.label_colormap())
    np.testing.assert_array_equal(standalone.CITYSCAPES_COLOURS, Cityscapes.palette)
    ids = np.arange(19, dtype=np.uint8)
    np.testing.assert_array_equal(
        standalone.train_ids_to_label_ids(ids), Cityscapes.train_ids_to_label_ids(ids)
    )


def test_a_video_or_no_output_folder_is_a_one_line_error(artefacts, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert standalone.main([artefacts["tflite"], str(clip), "--out", str(tmp_path)]) == 2
    assert "segment videos with `python -m kseg.predict`" in capsys.readouterr().err
    assert standalone.main([artefacts["tflite"], str(clip)]) == 2
    assert "--out DIR" in capsys.readouterr().err
    image = str(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert standalone.main([artefacts["tflite"], image, "--out", image]) == 2
    assert f"error: {image} is a file, not a folder" in capsys.readouterr().err


def test_segment_py_replaces_its_own_outputs_and_no_others(
    artefacts, demo_cityscapes, tmp_path, capsys
):
    """segment.py keeps kseg.predict's rule (`OutputFolder`): a second run replaces the
    first's outputs; a file of an output's name that it did not write stops it, with exit
    status 2 and the file unchanged."""
    image = sorted(glob.glob(os.path.join(demo_cityscapes, "leftImg8bit", "val", "*", "*.png")))[0]
    out = tmp_path / "out"
    stem = os.path.splitext(os.path.basename(image))[0]
    for _ in range(2):
        assert standalone.main([artefacts["tflite"], image, "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out)) == [
        standalone.OutputFolder.RECORD,
        f"{stem}_overlay.jpg",
        f"{stem}_pred.png",
    ]
    (out / f"{stem}_overlay.jpg").write_bytes(b"the user's")
    capsys.readouterr()
    assert standalone.main([artefacts["tflite"], image, "--out", str(out), "--quiet"]) == 2
    assert f"already holds {stem}_overlay.jpg, which kseg did not write" in capsys.readouterr().err
    assert (out / f"{stem}_overlay.jpg").read_bytes() == b"the user's"


def test_progress_into_a_file_is_a_line_at_each_tenth(capsys, monkeypatch):
    """Into a file (stderr not a terminal) a redrawn line would pile up: a line at each
    tenth of the items instead, each 100 items when their number is unknown; in a
    terminal one line, redrawn."""
    progress = standalone.Progress(100)
    for _ in range(25):
        progress.update(4)
    assert progress.close()[0] == 100
    lines = capsys.readouterr().err.splitlines()
    crossings = [n for n in range(4, 101, 4) if (n - 4) // 10 != n // 10]  # 12, 20, ..., 100
    assert [line.split()[0] for line in lines] == [f"{n}/100" for n in crossings]
    assert len(lines) == 10
    frames = standalone.Progress(None, "frames")
    for _ in range(10):
        frames.update(30)
    frames.close()
    assert [line.split()[0] for line in capsys.readouterr().err.splitlines()] == [
        "120", "210", "300"
    ]  # fmt: skip
    monkeypatch.setattr(standalone.sys.stderr, "isatty", lambda: True)
    shown = standalone.Progress(10)
    for _ in range(10):
        shown.update(1)
    shown.close()
    err = capsys.readouterr().err
    assert err.count("\r") == 10 and err.endswith("10/10 images, " + err.split(", ")[-1])
