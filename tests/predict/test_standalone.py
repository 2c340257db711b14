"""The export folder's `segment.py` (kseg.predict.standalone): it runs in a virtual
environment that holds only ai-edge-litert, numpy and pillow, matches Keras and
`kseg.predict`, and benchmarks with XNNPACK on and off."""

import glob
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
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


def _slide_inference(run, image: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """mmsegmentation's `slide_inference`, written out in numpy: windows on a grid of
    strides (2/3 of the window), the last row and column shifted to end at the edge, their
    logits summed into the whole image and divided by each pixel's count."""
    (h, w), (crop_h, crop_w) = image.shape[:2], window
    stride_h, stride_w = -(-crop_h * 2 // 3), -(-crop_w * 2 // 3)
    grids_h = max(h - crop_h + stride_h - 1, 0) // stride_h + 1
    grids_w = max(w - crop_w + stride_w - 1, 0) // stride_w + 1
    preds, count = None, np.zeros((h, w, 1))
    for i in range(grids_h):
        for j in range(grids_w):
            y2, x2 = min(i * stride_h + crop_h, h), min(j * stride_w + crop_w, w)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            logits = run(image[None, y1:y2, x1:x2])[0]
            if preds is None:
                preds = np.zeros((h, w, logits.shape[-1]))
            preds[y1:y2, x1:x2] += logits
            count[y1:y2, x1:x2] += 1
    return preds / count


def _window_model(batch: np.ndarray) -> np.ndarray:
    """Logits that depend on the whole window (its mean) and on each pixel's place in it,
    so that overlapping windows give a pixel different logits."""
    rows = np.arange(batch.shape[1], dtype=np.float32)[None, :, None, None] / batch.shape[1]
    return batch * 2 + batch.mean(axis=(1, 2), keepdims=True) + rows


@pytest.mark.parametrize("size, window", [((100, 150), (32, 48)), ((70, 40), (64, 64))])
def test_tiled_prediction_is_mmsegmentations_slide_inference_a_band_at_a_time(size, window):
    """The windows' averaged logits equal mmsegmentation's slide inference (written out
    above), and they come a band of rows at a time: each band as soon as its window row is
    run, so only a window's height of logits is held. A uint8 image is the float one / 255,
    and a window padded to a fixed size is cropped back."""
    image = np.random.default_rng(3).integers(0, 256, (*size, 3), np.uint8)
    x = image.astype(np.float32) / 255
    want = _slide_inference(_window_model, x, window)
    windows = standalone.Windows(window)
    np.testing.assert_allclose(
        standalone.tiled_prediction(_window_model, x, windows), want, atol=1e-5
    )
    calls, seen = [], []

    def run(batch):
        calls.append(batch.shape)
        return _window_model(batch)

    rows_done = []
    for rows, logits in standalone.tiled_bands(run, image, windows):
        rows_done.append((rows.start, rows.stop, len(calls)))
        np.testing.assert_allclose(logits, want[rows], atol=1e-5)
        seen.append(logits.argmax(-1))
    columns = len(standalone.window_starts(size[1], min(window[1], size[1])))
    starts = standalone.window_starts(size[0], min(window[0], size[0]))
    assert [start for start, _, _ in rows_done] == starts  # consecutive bands, from the top
    assert rows_done[-1][1] == size[0]
    assert [n for _, _, n in rows_done] == [columns * (k + 1) for k in range(len(starts))]
    labels = standalone.tiled_prediction(run, image, windows, labels=True)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.concatenate(seen))
    np.testing.assert_array_equal(labels, want.argmax(-1))
    # A fixed-size model: each window padded at the bottom and right, cropped back.
    fixed = (window[0] + 8, window[1] + 5)

    def fixed_run(batch):
        assert batch.shape[1:3] == fixed
        return _window_model(batch[:, : min(window[0], size[0]), : min(window[1], size[1])])

    padded = standalone.Windows(window, fixed=fixed)
    np.testing.assert_allclose(
        standalone.tiled_prediction(fixed_run, image, padded), want, atol=1e-5
    )


def test_overlay_is_the_half_blend_rounded_down_in_bands():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (7, 300_000, 3), np.uint8)  # bands of 3, 3 and 1 rows
    labels = rng.integers(0, 19, image.shape[:2]).astype(np.uint8)
    palette = standalone.default_palette(19)
    want = (0.5 * image + 0.5 * palette[labels]).astype(np.uint8)
    np.testing.assert_array_equal(standalone.overlay(image, labels, palette), want)


def test_images_past_pillows_limit_are_read_up_to_opencvs(tmp_path, monkeypatch):
    """Pillow refuses images over twice its `MAX_IMAGE_PIXELS` (179 megapixels) as
    possible decompression bombs; aerial images pass that. kseg reads up to OpenCV's 2^30
    pixels (`standalone.MAX_IMAGE_PIXELS`), names a larger file, and leaves Pillow's limit
    as it was. Both limits are scaled down here: a 50x80 image against 1000 and 3999."""
    from PIL import Image as PILImage

    path = str(tmp_path / "aerial.png")
    image = np.random.default_rng(5).integers(0, 256, (50, 80, 3), np.uint8)
    PILImage.fromarray(image).save(path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(PILImage.DecompressionBombError):
        PILImage.open(path)
    np.testing.assert_array_equal(standalone.read_image(path), image)
    monkeypatch.setattr(standalone, "MAX_IMAGE_PIXELS", 3999)
    with pytest.raises(standalone.UsageError, match=r"aerial.png: 80x50 is 4,000 pixels, over"):
        standalone.read_image(path)
    assert PILImage.MAX_IMAGE_PIXELS == 1000


def test_throughput_below_one_a_second_is_seconds_each():
    assert standalone.throughput(24, 1.5) == "16.0 images/s"
    assert standalone.throughput(1, 31.94) == "31.9 s an image"
    assert standalone.throughput(30, 60.0, "frames") == "2.0 s a frame"
    assert standalone.throughput(0, 0.0) == "0.0 images/s"


def test_segment_py_tiles_as_kseg_predict_does(artefacts, demo_cityscapes, litert_python, tmp_path):
    """`segment.py --tile` (LiteRT alone) and `kseg.predict --tile` (kseg's backend and
    predictor) segment an image 2.5 times the file's 64x128 input in windows of that size
    to the same label map, at the image's size; with --probabilities, the written
    probabilities are the tiled ones."""
    from kseg.predict.__main__ import main as kseg_predict

    script = os.path.join(os.path.dirname(artefacts["tflite"]), "segment.py")
    photos = tmp_path / "photos"
    photos.mkdir()
    images = sorted(glob.glob(os.path.join(demo_cityscapes, "leftImg8bit", "val", "*", "*.png")))
    wide = np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p in images[:2]], 1)
    Image.fromarray(np.concatenate([wide, wide[:32]], 0)).save(photos / "aerial.png")  # 96x256
    runs = {}
    for name in ("segment.py", "kseg.predict"):
        out = str(tmp_path / name)
        argv = [artefacts["tflite"], str(photos), "--out", out, "--quiet", "--tile"]
        if name == "kseg.predict":
            kseg_predict(argv)
        else:
            argv += ["--probabilities"]
            done = subprocess.run([litert_python, "-I", script, *argv], capture_output=True)
            assert done.returncode == 0, done.stderr
        runs[name] = masks_in(out)["aerial_pred.png"]
    assert runs["segment.py"].shape == (96, 256)
    np.testing.assert_array_equal(runs["segment.py"], runs["kseg.predict"])
    probabilities = np.load(tmp_path / "segment.py" / "aerial_prob.npz")["probabilities"]
    assert probabilities.shape == (96, 256, 19)
    agree = np.mean(probabilities.astype(np.float32).argmax(-1) == runs["segment.py"])
    assert agree > 0.999, agree


def test_a_geotiffs_label_map_is_written_where_gis_tools_place_it(
    artefacts, demo_cityscapes, litert_python, tmp_path
):
    """An aerial image in a GeoTIFF (written by rasterio, GDAL's Python bindings) also gets
    `<name>_pred.tif`, in which rasterio finds the image's coordinate system and transform,
    `_pred.png`'s labels and its colours: from segment.py (Pillow alone) and from
    kseg.predict alike. A TIFF that says nothing of its place gets none."""
    import rasterio
    from rasterio.transform import Affine

    from kseg.predict.__main__ import main as kseg_predict

    frames = sorted(glob.glob(os.path.join(demo_cityscapes, "leftImg8bit", "val", "*", "*.png")))
    image = np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p in frames[:2]], 1)
    photos = tmp_path / "photos"
    photos.mkdir()
    place = {"crs": "EPSG:32633", "transform": Affine(0.5, 0, 500_000, 0, -0.5, 5_000_000)}
    with rasterio.open(photos / "ortho.tif", "w", driver="GTiff", width=256, height=64,
                       count=3, dtype="uint8", **place) as out:  # fmt: skip
        out.write(image.transpose(2, 0, 1))
    Image.fromarray(image).save(photos / "plain.tif")
    script = os.path.join(os.path.dirname(artefacts["tflite"]), "segment.py")
    for name in ("segment.py", "kseg.predict"):
        out = tmp_path / name
        argv = [artefacts["tflite"], str(photos), "--out", str(out), "--quiet", "--tile"]
        if name == "kseg.predict":
            kseg_predict(argv)
        else:
            done = subprocess.run([litert_python, "-I", script, *argv], capture_output=True)
            assert done.returncode == 0, done.stderr
        assert not (out / "plain_pred.tif").exists() and (out / "plain_pred.png").exists()
        png = Image.open(out / "ortho_pred.png")
        with rasterio.open(out / "ortho_pred.tif") as placed:
            assert placed.crs.to_epsg() == 32633 and placed.transform == place["transform"]
            np.testing.assert_array_equal(placed.read(1), np.asarray(png))
            colours = placed.colormap(1)
            palette = np.asarray(png.getpalette()).reshape(-1, 3)
            assert all(colours[i][:3] == tuple(palette[i]) for i in range(19))
    # A satellite's 16-bit colour, which Pillow does not read: named, with how to convert.
    with rasterio.open(tmp_path / "sentinel.tif", "w", driver="GTiff", width=8, height=8,
                       count=3, dtype="uint16", **place) as out:  # fmt: skip
        out.write(np.full((3, 8, 8), 3000, np.uint16))
    with pytest.raises(standalone.UsageError, match="sentinel.tif: unreadable image .*-ot Byte"):
        standalone.read_image(str(tmp_path / "sentinel.tif"))


def test_an_overlay_wider_than_jpeg_holds_is_scaled_to_fit(tmp_path):
    """JPEG holds at most 65,500 pixels a side: the overlay of a wider image (an aerial
    strip) is scaled down to fit, where saving it whole failed after the image was
    segmented; the label map keeps every pixel."""
    image = np.random.default_rng(6).integers(0, 256, (4, 70_000, 3), np.uint8)
    labels = np.zeros((4, 70_000), np.uint8)
    labels[:, 35_000:] = 1
    writer = standalone.ImageWriter(str(tmp_path), standalone.default_palette(19))
    writer.check(["strip"])
    writer.write("strip", image, labels)
    writer.close()
    assert np.asarray(Image.open(tmp_path / "strip_pred.png")).shape == (4, 70_000)
    assert Image.open(tmp_path / "strip_overlay.jpg").size == (65_500, 3)


def test_class_names_outside_ascii_are_written_and_read_as_utf8_in_any_locale(tmp_path):
    """A bundle's labels.txt and classes.txt, written and read back in a process whose
    locale is not UTF-8 (Windows' cp1252, or LC_ALL=C as here with Python's coercion off):
    class names in Chinese and French come back as written, by segment.py's reader and
    kseg's. Before, writing them raised UnicodeEncodeError."""
    names = ["\u884c\u4eba", "pi\u00e9ton", "car"]
    script = f"""
import json, locale, numpy as np
from kseg.data.folder import read_class_list
from kseg.export.bundle import write_labels
from kseg.predict.standalone import read_palette
palette = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
write_labels({str(tmp_path)!r}, {ascii(names)}, 3, palette)
print("RESULT" + json.dumps({{
    "encoding": locale.getpreferredencoding(False),
    "palette": read_palette({str(tmp_path / "classes.txt")!r})[:3].tolist(),
    "names": list(read_class_list({str(tmp_path / "classes.txt")!r}).names),
}}))
"""
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0",
           "TF_CPP_MIN_LOG_LEVEL": "3"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, encoding="utf-8"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    assert result["encoding"].lower() in ("ascii", "ansi_x3.4-1968")  # the locale's, not UTF-8
    assert result["names"] == names and result["palette"] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert (tmp_path / "labels.txt").read_text(encoding="utf-8").split() == names
