"""Your own data (`python -m kseg.recipes.custom`), fine-tuning with --init-from, the run
record, and the command line's one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kseg.data import FolderDataset
from kseg.data.errors import CorruptFileError
from kseg.predict.outputs import OutputFolder
from kseg.recipes import custom
from tests.helpers import assert_predictions_colour_as_the_data

FAST = ["--steps-per-epoch", "1", "--batch-size", "2", "--crop", "64x128", "--verbose", "0",
        "--no-tensorboard", "--precise-bn-batches", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def custom_dir(tmp_path_factory):
    """The demo's real images in the folder layout: JPEG images, palette-PNG masks of five
    classes, classes.txt with colours."""
    from kseg.data.demo_data import build_demo_folder

    root = str(tmp_path_factory.mktemp("custom") / "data")
    return build_demo_folder(root, train=8, val=4, height=64, width=128)


def test_folder_dataset_reads_palette_masks_as_indices(custom_dir):
    from kseg.data import segmentation_pipeline

    dataset = FolderDataset(custom_dir)
    assert dataset.class_names == ("sky", "building", "road", "car", "person")
    assert dataset.palette[3].tolist() == [0, 0, 142]
    samples = dataset.samples("val")
    assert len(samples) == 4
    ds = segmentation_pipeline(dataset, samples[:1], 1, training=False)
    _, label = next(iter(ds))
    want = np.asarray(Image.open(samples[0].label))  # PIL: the palette indices
    np.testing.assert_array_equal(label.numpy()[0], want)
    assert set(np.unique(want)) <= {0, 1, 2, 3, 4, 255}


def test_colour_masks_read_as_the_classes_of_their_colours(custom_dir, tmp_path):
    """Colour (RGB) masks, as some labelling tools export them, give the labels of the
    index masks they were painted from, by classes.txt's colours; a colour classes.txt
    does not list, or a classes.txt without colours, is named."""
    import shutil

    from kseg.data import segmentation_pipeline

    palette = FolderDataset(custom_dir).palette
    roots = {kind: tmp_path / kind for kind in ("index", "colour")}
    for kind, root in roots.items():
        shutil.copytree(custom_dir, root)
        for path in sorted((root / "masks").rglob("*.png")):
            indices = np.asarray(Image.open(path))
            indices = np.where(indices == 255, 0, indices)  # no ignore colour to paint
            Image.fromarray(indices if kind == "index" else palette[indices]).save(path)
    labels = {}
    for kind, root in roots.items():
        dataset = FolderDataset(str(root))
        samples = dataset.samples("val")
        ds = segmentation_pipeline(dataset, samples, 4, training=False, seed=0)  # in order
        labels[kind] = np.concatenate([label.numpy() for _, label in ds])
    assert Image.open(samples[0].label).mode == "RGB" and len(np.unique(labels["index"])) > 2
    np.testing.assert_array_equal(labels["colour"], labels["index"])

    colour = roots["colour"]
    mask = colour / "masks" / "val" / "photo001.png"
    pixels = np.asarray(Image.open(mask)).copy()
    pixels[:2, :2] = 1, 2, 3
    Image.fromarray(pixels).save(mask)
    with pytest.raises(CorruptFileError, match=r"photo001.png: has 1 colour\(s\) that classes.txt "
                       r"does not list, e.g. \(1 2 3\)"):  # fmt: skip
        FolderDataset(str(colour)).samples("val")
    (colour / "classes.txt").write_text("sky 1 2 x\n")
    with pytest.raises(CorruptFileError, match=r"line 1: expected `name` or `name R G B`"):
        FolderDataset(str(colour))
    (colour / "classes.txt").write_text("sky\nbuilding\nroad\ncar\nperson\n")
    with pytest.raises(CorruptFileError, match="give every class its colour in classes.txt"):
        FolderDataset(str(colour)).samples("train")


def test_black_and_white_masks_are_refused_as_indices_and_read_by_grey_colours(
    custom_dir, tmp_path
):
    """Masks of 0 and 255 (255 marking the object, as many binary datasets store them)
    would, as indices, train nothing but class 0: refused with the fix, which then reads
    them as the two classes. A 16-bit value above 255 is named, not wrapped."""
    import shutil

    from kseg.data import segmentation_pipeline
    from kseg.errors import UserError

    root = tmp_path / "binary"
    shutil.copytree(custom_dir, root)
    objects = {}
    for path in sorted((root / "masks").rglob("*.png")):
        indices = np.asarray(Image.open(path))
        objects[path.name] = indices == 2  # road
        mask = Image.fromarray(np.where(objects[path.name], 255, 0).astype(np.uint8))
        (mask.convert("1") if path.name == "photo002.png" else mask).save(path)  # one 1-bit
    (root / "classes.txt").write_text("background\nroad\n")
    with pytest.raises(UserError) as error:
        FolderDataset(str(root)).samples("train")
    message = str(error.value)
    assert "masks/train hold only the values 0 and 255" in message
    assert "If 255 marks 'road'" in message
    assert "`background 0 0 0` and `road 255 255 255`" in message

    (root / "classes.txt").write_text("background 0 0 0\nroad 255 255 255\n")
    dataset = FolderDataset(str(root))
    samples = dataset.samples("val")
    ds = segmentation_pipeline(dataset, samples, 4, training=False, seed=0)  # in order
    labels = np.concatenate([label.numpy() for _, label in ds])
    want = np.stack([objects[os.path.basename(s.label)] for s in samples]).astype(np.uint8)
    assert 0 < want.mean() < 1
    np.testing.assert_array_equal(labels, want)

    sixteen = root / "masks" / "val" / "photo001.png"
    Image.fromarray(np.full((64, 128), 300, np.uint16)).save(sixteen)
    with pytest.raises(CorruptFileError, match="photo001.png: has value 300: mask values"):
        FolderDataset(str(root)).samples("val")


def test_without_a_val_folder_a_tenth_of_the_training_images_validates(custom_dir, tmp_path):
    """No images/val, or no split folders at all: the tenth (at least one) of the images
    whose names' MD5 hashes are lowest validates, the rest trains, the same on every run."""
    import hashlib
    import shutil

    from kseg.data.errors import DatasetLayoutError

    def names(samples, root):
        return sorted(os.path.relpath(s.image, root) for s in samples)

    def lowest(names, count):
        return sorted(sorted(names, key=lambda n: hashlib.md5(n.encode()).hexdigest())[:count])

    root = tmp_path / "no-val"
    shutil.copytree(custom_dir, root)
    for kind in ("images", "masks"):
        shutil.rmtree(root / kind / "val")
    dataset = FolderDataset(str(root))
    train, val = dataset.samples("train"), dataset.samples("val")
    images = str(root / "images" / "train")
    assert names(val, images) == lowest(os.listdir(images), 1)  # 8 images: one
    assert names(train, images) == sorted(set(os.listdir(images)) - set(names(val, images)))
    assert names(FolderDataset(str(root)).samples("val"), images) == names(val, images)

    # Without split folders: images/ and masks/ hold the files (subfolders allowed).
    flat = tmp_path / "flat"
    shutil.copytree(custom_dir, flat)
    for kind in ("images", "masks"):
        for path in (flat / kind / "train").iterdir():
            path.rename(flat / kind / path.name)
        (flat / kind / "val").rename(flat / kind / "more")
        (flat / kind / "train").rmdir()
    dataset = FolderDataset(str(flat))
    train, val = dataset.samples("train"), dataset.samples("val")
    everything = [
        os.path.relpath(str(p), flat / "images") for p in (flat / "images").rglob("*.jpg")
    ]
    assert len(everything) == 12 and names(val, flat / "images") == lowest(everything, 1)
    assert sorted(names(train, flat / "images") + names(val, flat / "images")) == sorted(everything)
    for s in train + val:  # each image with the mask of its name
        image, mask = (
            os.path.relpath(s.image, flat / "images"),
            os.path.relpath(s.label, flat / "masks"),
        )
        assert os.path.splitext(image)[0] == os.path.splitext(mask)[0]

    (flat / "images" / "test").mkdir()
    with pytest.raises(DatasetLayoutError, match="images/test without images/train"):
        FolderDataset(str(flat)).samples("train")
    for path in [*(root / "images" / "train").iterdir()][1:]:
        path.unlink()
    with pytest.raises(DatasetLayoutError, match="holds one image and there is no images/val"):
        FolderDataset(str(root)).samples("val")


def test_a_labelling_tools_voc_export_reads_as_it_is(custom_dir, tmp_path):
    """CVAT's "Segmentation mask 1.1" export (labelmap.txt, JPEGImages/, colour masks in
    SegmentationClass/, subset lists): FolderDataset opens it, with the labels of the index
    masks its colour masks were painted from; subsets train and val are the splits, and
    CVAT's single `default` subset has a tenth held out; a labelmap without colours means
    VOC's colour map. Its text files as a Windows editor saves them (UTF-8 with a byte
    order mark, CRLF line ends) and a class named outside ASCII read as written."""
    import shutil

    from kseg.data import segmentation_pipeline
    from kseg.data.voc_export import VocExport
    from kseg.errors import UserError

    palette = FolderDataset(custom_dir).palette
    names = ["background", "building", "road", "car", "piéton"]  # class 0 as CVAT's
    root = tmp_path / "cvat"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    labels, subsets = {}, {"train": [], "val": []}
    for split in ("train", "val"):
        for image in sorted((Path(custom_dir) / "images" / split).iterdir()):
            name = f"{split}_{image.stem}"  # names are unique across an export's subsets
            shutil.copy(image, root / "JPEGImages" / f"{name}.jpg")
            indices = np.asarray(
                Image.open(Path(custom_dir) / "masks" / split / f"{image.stem}.png")
            )
            labels[name] = np.where(indices == 255, 0, indices)  # CVAT paints no "ignore"
            Image.fromarray(palette[labels[name]]).save(root / "SegmentationClass" / f"{name}.png")
            subsets[split].append(name)
    lines = [f"{n}:{','.join(map(str, c))}::" for n, c in zip(names, palette.tolist(), strict=True)]
    windows = {"encoding": "utf-8-sig", "newline": "\r\n"}
    (root / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n" + "\n".join(lines), **windows
    )
    lists = root / "ImageSets" / "Segmentation"
    for split, subset in subsets.items():
        (lists / f"{split.title()}.txt").write_text("\n".join(subset) + "\n", **windows)

    dataset = FolderDataset(str(root))
    assert isinstance(dataset, VocExport) and dataset.class_names == tuple(names)
    with pytest.raises(UserError, match="a Pascal VOC export, whose masks are Segmentation"):
        FolderDataset(str(root), mask_suffix="_mask.png")  # its layout names the masks
    assert_predictions_colour_as_the_data(root / "labelmap.txt", dataset.palette)
    assert_predictions_colour_as_the_data(Path(custom_dir) / "classes.txt", palette)
    samples = dataset.samples("val")
    assert [Path(s.image).stem for s in samples] == subsets["val"]
    assert len(dataset.samples("train")) == 8
    ds = segmentation_pipeline(dataset, samples, 4, training=False, seed=0)  # in order
    read = np.concatenate([label.numpy() for _, label in ds])
    np.testing.assert_array_equal(read, np.stack([labels[n] for n in subsets["val"]]))

    # kseg.export --calib-data takes the export as it is.
    import keras

    from kseg.export.__main__ import _calibration_dataset

    image = keras.Input((None, None, 3))
    five = keras.Model(image, keras.layers.Conv2D(5, 1)(image))
    assert isinstance(_calibration_dataset(five, str(root), None), VocExport)

    # CVAT's single subset: a tenth held out.
    for split in subsets:
        (lists / f"{split.title()}.txt").unlink()
    (lists / "default.txt").write_text("\n".join(subsets["train"] + subsets["val"]) + "\n")
    dataset = FolderDataset(str(root))
    train, val = dataset.samples("train"), dataset.samples("val")
    assert (
        len(val) == 1 and len(train) == 11 and not {s.image for s in val} & {s.image for s in train}
    )

    # No colours: the tools' masks are in VOC's colour map (black, dark red, dark green...).
    (root / "labelmap.txt").write_text("\n".join(f"{n}:::" for n in names))
    voc = FolderDataset(str(root)).palette
    assert voc[:3].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]] and len(voc) == 5
    assert_predictions_colour_as_the_data(root / "labelmap.txt", voc)

    (root / "labelmap.txt").write_text("background:0,0,0::\nroad:::\n")
    with pytest.raises(CorruptFileError, match=r"classes without a colour, e.g. \['road'\]"):
        FolderDataset(str(root))
    (root / "labelmap.txt").write_text("background:0,0,0::\nroad:300,0,0::\n")
    with pytest.raises(CorruptFileError, match=r"line 2: expected `name:R,G,B:parts:actions`"):
        FolderDataset(str(root))


def test_bad_custom_files_are_named_or_skipped_and_counted(custom_dir, tmp_path):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(custom_dir, root)
    masks = root / "masks" / "train"
    (masks / "photo000.png").unlink()  # an image without a mask
    Image.fromarray(np.full((64, 128), 7, np.uint8)).save(masks / "photo001.png")  # value 7 >= 5
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "photo002.png")  # size mismatch
    jpeg = root / "images" / "train" / "photo003.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated
    cut = root / "images" / "train" / "photo004.jpg"  # cut past its header: opens, not decodes
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    photo = root / "images" / "train" / "photo005.jpg"  # as an uncompressed TIFF, cut short
    tiff = photo.with_suffix(".tif")
    Image.open(photo).save(tiff)
    photo.unlink()
    tiff.write_bytes(tiff.read_bytes()[: tiff.stat().st_size * 2 // 3])
    with pytest.raises(CorruptFileError, match="photo000.jpg: no mask"):
        FolderDataset(str(root)).samples("train")
    (root / "images" / "train" / "photo000.jpg").unlink()
    with pytest.raises(CorruptFileError) as error:
        FolderDataset(str(root)).samples("train")
    message = str(error.value)
    assert "photo001.png has value(s) [7] at or above the 5 classes" in message
    assert "photo002.jpg is 128x64 but its label" in message
    assert "photo003.jpg: unreadable" in message
    assert "photo004.jpg: unreadable (TensorFlow's decoder: jpeg::Uncompress failed" in message
    assert "photo005.tif: unreadable (cut short: its image data ends at byte" in message
    assert "--skip-bad-files" in message
    skipping = FolderDataset(str(root), on_bad="skip")
    with pytest.warns(UserWarning, match="skipped 5 bad file"):
        kept = skipping.samples("train")
    assert len(kept) == 8 - 6 and sum(skipping.skipped.values()) == 5
    assert str(cut) not in {s.image for s in kept}


def test_custom_recipe_fine_tunes_a_cityscapes_model_then_evaluates_and_predicts(
    custom_dir, trained, tmp_path, capsys
):
    """A 19-class demo model fine-tuned to the custom set's 5 classes (--init-from its run
    folder: the model it hands on): every weight but the heads' classifiers loads; the run
    records its settings; evaluate and predict use classes.txt."""
    import keras

    source = trained
    out = str(tmp_path / "custom-run")
    capsys.readouterr()
    custom.main(["train", "--data-dir", custom_dir, "--out", out, "--epochs", "1",
                 "--init-from", source, "--optimizer", "adam",
                 "--learning-rate", "0.001", "--weight-decay", "0", "--loss", "focal",
                 *FAST])  # fmt: skip
    printed = capsys.readouterr().out
    best = os.path.join(source, "best.keras")
    assert f"{source} is a run folder: its model is {best}\nInitialised from {best}:" in printed
    assert "kept fresh (shape differs)" in printed
    # the paper preset's line says which of its values this run's flags replaced
    assert (
        "this run's own: optimizer adam, learning rate 0.001, weight decay 0.0, loss focal"
        in printed
    )
    record = json.load(open(os.path.join(out, "config.json")))
    assert record["run"]["init_from"] == best  # the file the folder handed on
    assert record["preset"]["optimizer"] == "adam" and record["preset"]["learning_rate"] == 0.001
    assert record["run"]["loss"] == "focal" and record["dataset"] == "custom"
    assert set(record["versions"]) == {"kseg", "tensorflow", "keras"}
    # The fine-tuned model kept the source's first convolution until its first step: the
    # loaded tensor changed by at most one Adam step of 1e-3 per element.
    tuned = keras.saving.load_model(os.path.join(out, "best.keras"), compile=False)
    original = keras.saving.load_model(os.path.join(source, "best.keras"), compile=False)
    a = tuned.get_layer("deep_stem_conv").kernel.numpy()
    b = original.get_layer("deep_stem_conv").kernel.numpy()
    assert np.max(np.abs(a - b)) < 1.1e-3 and tuned.output["logits"].shape[-1] == 5
    custom.main(["evaluate", "--data-dir", custom_dir, "--out", out])
    result = json.load(open(os.path.join(out, "evaluation.json")))
    assert list(result["iou"]) == ["sky", "building", "road", "car", "person"]
    custom.main(["predict", "--data-dir", custom_dir, "--out", out])
    predictions = sorted(set(os.listdir(os.path.join(out, "predictions"))) - {OutputFolder.RECORD})
    assert len(predictions) == 8  # every val image (4): colour PNG and overlay
    png = Image.open(os.path.join(out, "predictions", "photo000_pred.png"))
    assert png.getpalette()[9:12] == [0, 0, 142]  # classes.txt's colour of class 3
    # kseg.predict on the run's model colours as the data it trained on (its config.json),
    # and kseg.export names its classes so, without --classes or --labels, and writes their
    # colours as classes.txt, which kseg.predict and segment.py take from the export folder.
    from kseg.export.__main__ import main as export
    from kseg.predict import standalone
    from kseg.predict.__main__ import main as predict

    image = os.path.join(custom_dir, "images", "val", "photo000.jpg")
    predict([os.path.join(out, "best.keras"), image, "--out", str(tmp_path / "p"), "--quiet"])
    png = Image.open(tmp_path / "p" / "photo000_pred.png")
    assert png.getpalette()[9:12] == [0, 0, 142]
    bundle = tmp_path / "bundle"
    export([os.path.join(out, "best.keras"), "--out", str(bundle), "--formats", "tflite",
            "--input-size", "64x128"])  # fmt: skip
    assert (bundle / "labels.txt").read_text().splitlines()[3] == "car"
    assert (bundle / "classes.txt").read_text() == open(
        os.path.join(custom_dir, "classes.txt")
    ).read()
    tflite = str(bundle / "contextnet_cn14_fp32.tflite")
    for run, folder in ((predict, "q"), (standalone.main, "s")):
        capsys.readouterr()
        run([tflite, image, "--out", str(tmp_path / folder), "--quiet"])
        assert f"Colours of {bundle / 'classes.txt'}" in capsys.readouterr().out
        png = Image.open(tmp_path / folder / "photo000_pred.png")
        assert png.getpalette()[9:12] == [0, 0, 142]
    # --config re-runs from the record; flags override it.
    from kseg.recipes.cli import parse

    again = parse(custom.RECIPE, ["train", "--config", os.path.join(out, "config.json"),
                                  "--epochs", "5"])  # fmt: skip
    assert again.epochs == 5 and again.loss == "focal" and again.optimizer == "adam"
    assert again.crop == (64, 128) and again.data_dir == custom_dir


def _error_of(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


def test_user_mistakes_give_one_error_and_status_2(custom_dir, tmp_path, capsys):
    from kseg.export.__main__ import main as export_main

    data = ["--data-dir", custom_dir, "--out", str(tmp_path / "r")]
    err = _error_of(custom.main, ["train", *data, "--model", "contextnet_cn99"], capsys)
    assert err.startswith("error: unknown model 'contextnet_cn99'; registered models:")
    err = _error_of(custom.main, ["train", *data, "--model-kwargs", "{paths"], capsys)
    assert "expected a JSON object like" in err
    err = _error_of(custom.main, ["train", *data, "--model-kwargs", '{"widht": 2}'], capsys)
    assert "error: ContextNet got unknown argument(s): widht" in err
    err = _error_of(custom.main, ["evaluate", *data], capsys)
    assert "no model to use" in err and "train first" in err
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    err = _error_of(custom.main, ["evaluate", *data, "--checkpoint", str(corrupt)], capsys)
    assert f"error: {corrupt} is not a .keras model file" in err
    import keras

    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    err = _error_of(export_main, [str(plain), "--out", str(tmp_path / "e")], capsys)
    assert "holds a Sequential, not a kseg model" in err
    err = _error_of(export_main, [str(tmp_path / "nope.keras"), "--out", "e"], capsys)
    assert "nope.keras: no such file" in err
    err = _error_of(export_main, [str(plain), "--out", "e", "--formats", "savedmodel"], capsys)
    assert "argument --formats: unknown 'savedmodel'; choose from keras,saved_model" in err
    err = _error_of(export_main, [str(plain), "--out", "e", "--quantize", "fp32,int4"], capsys)
    assert "argument --quantize: unknown 'int4'; choose from fp32,fp16" in err
    from kseg.models import create_model

    small = tmp_path / "small.keras"
    create_model("contextnet_cn14", num_classes=5, width_multiplier=0.25).save(small)
    err = _error_of(
        export_main, [str(small), "--out", str(tmp_path / "e"), "--input-size", "100x100"], capsys
    )
    assert "multiples of 32; got 100x100" in err and "128x128" in err
    # --calib-data reads your own data's layout when the folder holds classes.txt, and
    # refuses data whose classes are not the model's.
    wide = tmp_path / "wide.keras"
    create_model("contextnet_cn14", num_classes=19, width_multiplier=0.25).save(wide)
    err = _error_of(export_main, [str(wide), "--out", "e", "--calib-data", custom_dir], capsys)
    assert f"outputs 19 classes, but the custom data in {custom_dir} has 5" in err
    err = _error_of(custom.main, ["predict", *data, "--label-ids"], capsys)  # was ignored
    assert "error: --label-ids writes Cityscapes' labelIds; data has none: leave it out" in err
    for command in ("evaluate", "predict"):  # scoring or colouring 19 classes as 5: refused
        err = _error_of(custom.main, [command, *data, "--checkpoint", str(wide)], capsys)
        assert f"error: {wide} outputs 19 classes, and data has 5: give the --checkpoint" in err
    err = _error_of(export_main, [str(small), "--out", "e", "--calib-data", custom_dir,
                                  "--calib-split", "tarin"], capsys)  # fmt: skip
    assert "has splits ('train', 'val', 'test'), not 'tarin'" in err
    err = _error_of(custom.main, ["evaluate", *data, "--checkpoint", str(small), "--split", "tset"],
                    capsys)  # fmt: skip
    assert "has splits ('train', 'val', 'test'), not 'tset'" in err
    err = _error_of(custom.main, ["train", *data, "--batch-size", "6", "--accumulate", "4"],
                    capsys)  # fmt: skip
    assert "error: --accumulate 4 cannot split the 6 images of a step into equal pieces: " \
        "give a divisor of 6 (2, 3, 6)" in err  # fmt: skip
    # a step of 2^31 pixels: TensorFlow's 32-bit shapes would fail in the first step
    err = _error_of(custom.main, ["train", *data, "--crop", "4096x4096", "--batch-size", "128"],
                    capsys)  # fmt: skip
    assert "error: --crop 4096x4096 with --batch-size 128 is 2,147,483,648 pixels a step" in err
    err = _error_of(custom.main, ["train", "--config", str(tmp_path / "none.json")], capsys)
    assert "no such file" in err
    # --out a folder of the user's, holding files of the names a run writes: refused, as is
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.json").write_text('{"lr": 0.1}')
    (mine / "log.csv").write_text("my notes\n")
    err = _error_of(custom.main, ["train", "--data-dir", custom_dir, "--out", str(mine)], capsys)
    assert f"error: {mine / 'config.json'} is not a kseg run's, and a run in {mine} would " in err
    assert sorted(os.listdir(mine)) == ["config.json", "log.csv"]
    assert (mine / "config.json").read_text() == '{"lr": 0.1}'
    # a bad classes.txt line: refused even with --skip-bad-files (its lines number the classes)
    bad_classes = tmp_path / "bad_classes"
    shutil.copytree(custom_dir, bad_classes)
    lines = (bad_classes / "classes.txt").read_text().splitlines()
    lines[1] = "traffic light 250 170 30"
    (bad_classes / "classes.txt").write_text("\n".join(lines) + "\n")
    err = _error_of(custom.main, ["train", "--data-dir", str(bad_classes), "--out",
                                  str(tmp_path / "b"), "--skip-bad-files"], capsys)  # fmt: skip
    assert "classes.txt line 2: expected `name` or `name R G B`" in err
    assert "its lines give the classes their indices" in err and "--skip-bad-files" not in err
    from kseg.recipes import cifar10

    kwargs = '{"solver": {"method": "rk5"}}'
    err = _error_of(cifar10.main, ["train", "--demo", "--model-kwargs", kwargs,
                                   "--out", str(tmp_path / "c")], capsys)  # fmt: skip
    assert "error: unknown ODE method 'rk5'; choose one of" in err
    kwargs = '{"solver": {"steps": 4}}'
    err = _error_of(cifar10.main, ["train", "--demo", "--model-kwargs", kwargs,
                                   "--out", str(tmp_path / "d")], capsys)  # fmt: skip
    assert err.startswith("error: steps=4 is a fixed-grid setting and dopri5 is adaptive")


def test_numbers_out_of_range_and_an_out_that_is_a_file_are_one_error(custom_dir, tmp_path, capsys):
    """A count below 1 (or 0 where 0 means none), a rate or size that is not positive, a
    fraction past 1: each command's parser names the flag, and a --config file's numbers
    are checked as the flags are. Before, --batch-size 0 and --learning-rate -1 trained,
    --epochs -1 and --out FILE ended in a traceback. Fewer training images than one batch
    trained no step at all; now that is one error with the batch that fits."""
    from kseg.data.tile import main as tile_main
    from kseg.export.__main__ import main as export_main
    from kseg.models import create_model
    from kseg.predict.__main__ import main as predict_main
    from kseg.predict.standalone import main as segment_main

    out = str(tmp_path / "r")
    data = ["--data-dir", custom_dir, "--out", out]
    whole = "expected a whole number of at least"
    for flag, value, said in [
        ("--epochs", "0", f"{whole} 1, got '0'"),
        ("--batch-size", "-2", f"{whole} 1, got '-2'"),
        ("--steps-per-epoch", "1.5", f"{whole} 1, got '1.5'"),
        ("--precise-bn-batches", "-1", f"{whole} 0, got '-1'"),
        ("--seed", "-3", f"{whole} 0, got '-3'"),
        ("--learning-rate", "0", "expected a number above 0, got '0'"),
        ("--learning-rate", "nan", "expected a number above 0, got 'nan'"),
        ("--weight-decay", "-1e-4", "expected a number of at least 0, got '-1e-4'"),
        ("--crop", "0x64", "expected HEIGHTxWIDTH in pixels, e.g. 512x1024; got '0x64'"),
        ("--prune-to", "1.0,-0.5", "expected widths above 0 like 1.5,1.25,1.0"),
    ]:
        err = _error_of(custom.main, ["train", *data, f"{flag}={value}"], capsys)
        assert f"error: argument {flag}: {said}" in err, err
    config = tmp_path / "settings.json"
    config.write_text('{"epochs": 2, "batch_size": 0}', encoding="utf-8-sig")  # as Notepad
    err = _error_of(custom.main, ["train", *data, "--config", str(config)], capsys)
    assert err.strip() == f"error: --config {config}: batch_size: {whole} 1, got '0'"

    model = str(tmp_path / "m.keras")
    create_model("contextnet_cn14", num_classes=5, width_multiplier=0.25).save(model)
    for main, argv, said in [
        (export_main, [model, "--out", "e", "--prune", "1.5"],
         "argument --prune: expected a fraction from 0 up to, not including, 1, got '1.5'"),
        (export_main, [model, "--out", "e", "--ode-steps", "0"],
         "argument --ode-steps: expected auto or a number of steps, got '0'"),
        (export_main, [model, "--out", "e", "--ode-agreement", "99.5"],
         "argument --ode-agreement: expected a fraction above 0 and up to 1, got '99.5'"),
        (predict_main, [model, custom_dir, "--out", "p", "--batch-size", "0"],
         f"argument --batch-size: {whole} 1, got '0'"),
        (segment_main, ["m.tflite", "--benchmark", "--threads", "0"],
         f"argument --threads: {whole} 1, got '0'"),
        (tile_main, [custom_dir, "--out", "t", "--size", "0"],
         "argument --size: expected N or HEIGHTxWIDTH in pixels, e.g. 1024 or 512x1024; got '0'"),
        (tile_main, [custom_dir, "--out", "t", "--overlap", "-8"],
         f"argument --overlap: {whole} 0, got '-8'"),
    ]:  # fmt: skip
        assert f"error: {said}" in _error_of(main, argv, capsys)

    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    err = _error_of(custom.main, ["train", "--data-dir", custom_dir, "--out", str(mine)], capsys)
    assert err.strip() == f"error: --out {mine} is a file, not a folder: give a folder for the run"
    err = _error_of(export_main, [model, "--out", str(mine)], capsys)
    assert f"error: --out {mine} is a file, not a folder: give a folder for the export" in err
    assert mine.read_text() == "mine"

    err = _error_of(custom.main, ["train", *data, "--crop", "64x128"], capsys)  # the preset's 16
    assert err.strip() == (
        "error: data train: 8 training image(s), fewer than one batch of 16 (the preset's): "
        "give --batch-size 8 or less"
    )
    err = _error_of(custom.main, ["train", *data, "--batch-size", "9", "--accumulate", "3"],
                    capsys)  # fmt: skip
    assert "fewer than one batch of 9 (--batch-size's): give --batch-size 6 or less" in err


def test_a_registered_model_without_a_preset_trains_with_the_default(
    custom_dir, tmp_path, capsys, model_registry
):
    import keras

    from kseg.models import register_model
    from kseg.models.base import SegmentationModel

    @register_model("test_tiny_segmenter")
    def tiny(num_classes: int = 2) -> SegmentationModel:
        inputs = keras.Input((None, None, 3))
        logits = keras.layers.Conv2D(num_classes, 3, padding="same", name="classifier")(inputs)
        return SegmentationModel(inputs, logits, name="test_tiny_segmenter")

    out = str(tmp_path / "run")
    custom.main(["train", "--data-dir", custom_dir, "--out", out, "--model", "test_tiny_segmenter",
                 "--epochs", "1", *FAST])  # fmt: skip
    printed = capsys.readouterr().out
    assert "test_tiny_segmenter has no paper preset; training with kseg's default" in printed
    record = json.load(open(os.path.join(out, "config.json")))
    assert record["preset"]["name"] == "default" and record["preset"]["optimizer"] == "adamw"


def test_the_real_command_line_prints_one_line_and_debug_shows_the_traceback(tmp_path):
    argv = [sys.executable, "-m", "kseg.recipes.cityscapes", "train", "--data-dir", str(tmp_path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([*argv, "--model", "nope"], capture_output=True, text=True, env=env)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith("error")]
    assert lines == [lines[0]] and "Traceback" not in run.stderr
    assert "unknown model 'nope'" in lines[0] or "Expected layout" in run.stderr
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, env=env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "DatasetLayoutError" in debug.stderr


def test_sigterm_stops_a_command_as_ctrl_c_does_with_its_status():
    """A batch scheduler ends a job with SIGTERM: the command stops as on Ctrl-C, saying
    `terminated` (a training run adds what it saved, as `test_cli` checks for Ctrl-C), and
    exits with 143, without a traceback."""
    code = (
        "import os, signal, time\n"
        "from kseg.errors import run_command\n"
        "def main():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "    print('not stopped')\n"
        "run_command(main, [])\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 143 and run.stdout == ""
    assert run.stderr.rstrip().endswith("\nterminated") and "Traceback" not in run.stderr


def test_a_full_disk_is_one_line_and_any_other_os_error_keeps_its_traceback(capsys):
    """A write to /dev/full fails as on a full disk (ENOSPC): one `error:` line, status 2;
    a missing file, which only a bug would open, keeps its traceback."""
    from kseg.errors import run_command

    def fill():
        with open("/dev/full", "w") as f:
            f.write("x")

    with pytest.raises(SystemExit) as exit_:
        run_command(fill, [])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.startswith("error: no space left on the device") and err.count("\n") == 1
    with pytest.raises(FileNotFoundError):
        run_command(lambda: open("/nonexistent/kseg"), [])
    with pytest.raises(OSError, match="No space left"):  # --debug: the traceback
        run_command(fill, ["--debug"])


def test_tensorflows_out_of_memory_is_one_line(capsys, tensorflow_oom):
    """TensorFlow's own out-of-memory error (a 1 TiB tensor, which its CPU allocator
    refuses) is one `error:` line with what did not fit, status 2."""
    from kseg.errors import run_command

    with pytest.raises(SystemExit) as exit_:
        run_command(tensorflow_oom, [])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert err == (
        "error: out of memory on CPU:0: a 274877906944 tensor (1,048,576 MiB) did not fit: "
        "use smaller batches or images and run again\n"
    )


def test_out_of_memory_in_evaluate_and_predict_names_what_lowers_it(
    trained, demo_cityscapes, tmp_path, monkeypatch, capsys, tensorflow_oom
):
    """A real TensorFlow OOM (1 TiB) where the images go through the model: evaluate names
    its sliding windows, the recipe's predict and `kseg.predict` name --fit."""
    import kseg.predict.__main__ as predict_main
    import kseg.predict.predictor
    from kseg.recipes import cityscapes
    from kseg.tasks import SegmentationTask

    monkeypatch.setattr(SegmentationTask, "evaluate_outputs", tensorflow_oom)
    monkeypatch.setattr(kseg.predict.predictor.Predictor, "model_logits", tensorflow_oom)
    best = os.path.join(trained, "best.keras")
    run = ["--data-dir", demo_cityscapes, "--checkpoint", best, "--out", str(tmp_path / "r")]
    did_not_fit = "error: out of memory on CPU:0: a 274877906944 tensor (1,048,576 MiB) did not fit"
    err = _error_of(cityscapes.main, ["evaluate", *run], capsys)
    assert err.startswith(f"{did_not_fit} in evaluate: --scales 1.0 scores images larger")
    assert err.count("\n") == 1
    err = _error_of(cityscapes.main, ["predict", *run], capsys)
    assert err.startswith(f"{did_not_fit} in predict: python -m kseg.predict CHECKPOINT")
    image = os.path.join(demo_cityscapes, "leftImg8bit", "val")
    err = _error_of(predict_main.main, [best, image, "--out", str(tmp_path / "p")], capsys)
    assert err == (
        f"{did_not_fit}: lower --batch-size, or segment large photos at a smaller size with "
        "--fit HxW and run again\n"
    )


def test_import_kseg_gives_export_features_and_tasks():
    import kseg

    assert callable(kseg.export.export) and callable(kseg.features.extract)
    assert kseg.tasks.SegmentationTask().monitor.__self__ is not None
    with pytest.raises(AttributeError):
        kseg.nothing  # noqa: B018


def test_a_default_crop_larger_than_every_image_is_fitted_to_them(custom_dir, capsys):
    """The custom recipe's default 512x512 on the 64x128 images: 64x128 (each side rounded
    up to the model's multiple), said in one line; a crop within the images stays."""
    from kseg.recipes.segmentation import fitted_crop

    samples = FolderDataset(custom_dir).samples("train")
    assert fitted_crop((512, 512), samples, 32) == (64, 128)
    assert "Crop 64x128: the default 512x512 is larger than every training image (at most " \
        "64x128)" in capsys.readouterr().out  # fmt: skip
    assert fitted_crop((512, 512), samples, 48) == (96, 144)
    assert fitted_crop((32, 64), samples, 32) == (32, 64)
    assert capsys.readouterr().out.count("Crop") == 1


def test_accumulate_trains_each_batch_in_pieces(custom_dir, tmp_path, capsys):
    """`--accumulate 2` trains a ContextNet with each batch of 2 in two pieces of one image
    (`kseg.train.accumulation`, whose step is tested against Keras' own), says so, and
    records it with the run. `--val-every 2` (here too, to spare a run) validates the
    second epoch and not the first (tests/train/test_checkpoints.py has what the history
    and best.keras make of it)."""
    out = tmp_path / "pieces"
    custom.main(["train", "--data-dir", custom_dir, "--out", str(out), "--epochs", "2",
                 "--accumulate", "2", "--val-every", "2", *FAST])  # fmt: skip
    printed = capsys.readouterr().out
    assert "batch 2 in 2 pieces of 1 (--accumulate; batch norm on each piece)" in printed
    assert "1 steps x 2 epochs, validated every 2 and the last, 1 replica(s)" in printed
    run = json.load(open(out / "config.json"))["run"]
    assert run["accumulate"] == 2 and run["val_every"] == 2
    state = json.load(open(out / "state.json"))
    scores = state["history"]["val_logits_mean_iou"]
    assert scores[0] is None and scores[1] is not None and state["best_epoch"] == 2
    assert (out / "last-epoch0002.keras").exists()


def test_a_step_of_2_31_pixels_in_one_loss_is_refused_before_training():
    """TensorFlow counts a loss's flattened labels in 32 bits: 1024 crops of 1024x2048
    (2^31 pixels) are refused on one replica; on two, or in two --accumulate pieces, each
    loss sees half and they train."""
    from kseg.errors import UserError
    from kseg.recipes.segmentation import check_step_pixels

    with pytest.raises(UserError, match="2,147,483,648 pixels a step.*32 bits"):
        check_step_pixels((1024, 2048), 1024, replicas=1)
    with pytest.raises(UserError, match="on each of 2 replicas in each of 2 pieces"):
        check_step_pixels((2048, 2048), 2048, replicas=2, pieces=2)
    check_step_pixels((1024, 2048), 1024, replicas=2)
    check_step_pixels((1024, 2048), 1024, replicas=1, pieces=2)
    check_step_pixels((1024, 2048), 1023, replicas=1)


def test_balance_classes_weighs_the_cross_entropy_by_median_frequency(
    custom_dir, tmp_path, monkeypatch
):
    """The weights are median(f) / f_c of the training masks' pixels (f_c: a class's pixels
    over the pixels of the images that show it), by hand here; the run compiles its loss
    with them and records them, and resumes with them without counting again; a loss that
    takes no weights is refused."""
    import keras

    from kseg.data.class_balance import class_pixels, median_frequency_weights
    from kseg.errors import UserError

    assert median_frequency_weights(np.array([10, 30, 0, 60]), np.array([100, 100, 0, 100])) \
        == pytest.approx([3.0, 1.0, 1.0, 0.5])  # fmt: skip
    dataset = FolderDataset(custom_dir)
    samples = dataset.samples("train")
    pixels, shown = np.zeros(5), np.zeros(5)
    for s in samples:
        mask = np.asarray(Image.open(s.label)).ravel()
        counts = np.bincount(mask[mask != 255], minlength=5)[:5]
        pixels, shown = pixels + counts, shown + (counts > 0) * counts.sum()
    np.testing.assert_array_equal(class_pixels(dataset, samples), [pixels, shown])
    want = median_frequency_weights(pixels, shown)
    assert want.min() < 1 < want.max()

    out = str(tmp_path / "balanced")
    custom.main(["train", "--data-dir", custom_dir, "--out", out, "--epochs", "1",
                 "--balance-classes", "--loss", "cross_entropy", *FAST])  # fmt: skip
    recorded = json.load(open(os.path.join(out, "config.json")))["preset"]["class_weights"]
    np.testing.assert_allclose(recorded, want, rtol=1e-5)
    model = keras.saving.load_model(os.path.join(out, "last-epoch0001.keras"))
    loss = model.loss["logits"] if isinstance(model.loss, dict) else model.loss
    np.testing.assert_allclose(loss.class_weights, want, rtol=1e-5)
    # Resumed, the run keeps the recorded weights (its saved loss holds them): no recount.
    import kseg.data.class_balance as class_balance

    def recount(*args):
        raise AssertionError("the labels were counted again")

    monkeypatch.setattr(class_balance, "class_pixels", recount)
    custom.main(["train", "--data-dir", custom_dir, "--out", out, "--epochs", "2",
                 "--balance-classes", "--loss", "cross_entropy", *FAST])  # fmt: skip
    again = json.load(open(os.path.join(out, "config.json")))["preset"]["class_weights"]
    assert again == recorded and os.path.exists(os.path.join(out, "last-epoch0002.keras"))
    with pytest.raises(UserError, match="--balance-classes weighs the cross-entropy .* is dice"):
        custom.main(["train", "--data-dir", custom_dir, "--out", str(tmp_path / "d"),
                     "--balance-classes", "--loss", "dice", "--debug", *FAST])  # fmt: skip


def test_the_custom_recipes_demo_runs_on_real_images_in_your_own_datas_layout(tmp_path, capsys):
    """`python -m kseg.recipes.custom --demo` (here one short epoch): the demo's photos
    written as images/, masks/ and classes.txt, trained on, evaluated by classes.txt's
    names, predicted in its colours and exported to TFLite checked in LiteRT."""
    out = tmp_path / "demo"
    custom.main(["--demo", "--out", str(out), "--epochs", "1", *FAST])
    printed = capsys.readouterr().out
    assert sorted(os.listdir(out / "demo-data")) == [".complete", "classes.txt", "images", "masks"]
    result = json.load(open(out / "evaluation.json"))
    assert list(result["iou"]) == ["sky", "building", "road", "car", "person"]
    png = Image.open(out / "predictions" / "photo000_pred.png")
    assert png.getpalette()[9:12] == [0, 0, 142]
    assert {"contextnet_cn14_fp32.tflite", "contextnet_cn14_int8.tflite"} <= set(
        os.listdir(out / "export")
    )
    assert "your own data's layout: images/, masks/, classes.txt" in printed


def test_a_runs_data_is_found_from_another_working_folder(custom_dir, tmp_path, monkeypatch):
    """A run started in project/ records `--data-dir data --out runs/x` as given; from
    another folder its data is found by where the run started."""
    import shutil

    from kseg.recipes.config import trained_data

    project = tmp_path / "project"
    shutil.copytree(custom_dir, project / "data")
    (project / "runs" / "x").mkdir(parents=True)
    record = {"run": {"data_dir": "data", "out": "runs/x"}, "dataset": "custom"}
    (project / "runs" / "x" / "config.json").write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)
    dataset = trained_data(str(project / "runs" / "x" / "best.keras"), 5)
    assert dataset.class_names == ("sky", "building", "road", "car", "person")
    assert trained_data(str(project / "runs" / "x" / "best.keras"), 6) is None  # not 5
    monkeypatch.chdir(project)
    assert trained_data("runs/x/best.keras", 5).root == str(project / "data")


def test_mixed_precision_trains_with_loss_scaling_and_leaves_the_policy_as_it_was(
    custom_dir, tmp_path, capsys
):
    """--mixed-precision float16: the run's layers compute in float16 with float32 weights,
    its optimiser scales the loss (float16 gradients underflow without), and the training
    line says so; the run resumes as it trained, and afterwards the caller's Keras policy
    is float32 again (a later model built in the same process is not float16)."""
    import keras

    out = str(tmp_path / "fp16")
    for epochs in ("1", "2"):  # the second resumes the first
        custom.main(["train", "--data-dir", custom_dir, "--out", out, "--epochs", epochs,
                     "--mixed-precision", "float16", *FAST])  # fmt: skip
        line = "mixed precision: float16 compute, float32 weights, loss scaled"
        assert line in capsys.readouterr().out
        assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(os.path.join(out, "last-epoch0002.keras"))
    assert {w.dtype for w in model.weights} == {"float32"}  # what export takes as it is
    assert json.load(open(os.path.join(out, "config.json")))["run"]["mixed_precision"] == "float16"
    custom.main(["evaluate", "--data-dir", custom_dir, "--out", out])
    assert "mean IoU" in capsys.readouterr().out


def test_hrnets_pytorch_weights_start_a_run_or_are_evaluated_as_they_are(
    custom_dir, tmp_path, capsys
):
    """`--init-from` a PyTorch checkpoint of HRNet builds the HRNet as PyTorch computes
    (tests/models/test_hrnet_torch.py: then its logits are PyTorch's), loads every weight,
    and the saved model keeps that convention. `evaluate --checkpoint` the same file
    scores that model as it is, the same as the model built and saved by hand; a
    checkpoint without the segmentation head (ImageNet weights) is refused. A run from
    scratch says where the paper's results start from."""
    import keras

    import kseg
    from kseg.models.hrnet.hrnet import TORCH_ARGUMENTS
    from kseg.train.init_from import init_from
    from tests.models.torch_fixtures.torch_state import random_state, write_safetensors

    reference = np.load(Path(__file__).parents[1] / "models/torch_fixtures/reference.npz")
    state = random_state(json.loads(str(reference["shapes"])))
    weights = tmp_path / "hrnet.safetensors"
    write_safetensors(weights, state)
    out = tmp_path / "hrnet-run"
    small = {"width": 4, "stage_modules": [1, 1, 1], "blocks": 1}
    hrnet = ["--data-dir", custom_dir, "--out", str(out), "--model", "hrnetv2_w48",
             "--model-kwargs", json.dumps(small)]  # fmt: skip
    custom.main(["train", *hrnet, "--epochs", "1", "--init-from", str(weights), *FAST])
    printed = capsys.readouterr().out
    assert "Built as PyTorch computes it (convention='pytorch')" in printed
    assert "317 of 317 weight tensors loaded" in printed
    assert "starts from scratch" not in printed
    model = keras.saving.load_model(out / "last-epoch0001.keras", compile=False)
    assert (model.convention, model.width) == ("pytorch", 4)

    custom.main(["evaluate", *hrnet, "--checkpoint", str(weights)])
    by_hand = kseg.models.HRNetV2(num_classes=5, **small, **TORCH_ARGUMENTS)
    init_from(by_hand, str(weights), verbose=False)
    by_hand.save(tmp_path / "by_hand.keras")
    custom.main(["evaluate", *hrnet, "--checkpoint", str(tmp_path / "by_hand.keras")])
    scores = [json.load(open(out / f"evaluation_{n}.json")) for n in ("hrnet", "by_hand")]
    assert scores[0]["iou"] == scores[1]["iou"] and len(scores[0]["iou"]) == 5

    # From scratch, the run says where the paper's numbers start from.
    scratch = ["--out", str(tmp_path / "scratch"), "--epochs", "1", *FAST]
    custom.main(["train", *hrnet, *scratch])
    assert "Note: this run starts from scratch. HRNetV2's published results start from " in (
        capsys.readouterr().out
    )

    backbone = tmp_path / "imagenet.safetensors"
    write_safetensors(backbone, {k: v for k, v in state.items() if "last_layer" not in k})
    message = _error_of(custom.main, ["evaluate", *hrnet, "--checkpoint", str(backbone)], capsys)
    assert "leaves 7 of hrnetv2_w4's weights untrained (head_conv/kernel" in message
