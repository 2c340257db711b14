"""Your own data as labelme saves it (a JSON file of shapes beside each image), read as it
is: shapes drawn to the pixels closed forms give, the demo's real masks read back exactly,
labelme's labels.txt, and each mistake named."""

import base64
import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from kseg.data import FolderDataset, LabelmeFolder
from kseg.data.errors import CorruptFileError, DatasetLayoutError
from kseg.data.labelme import draw_shapes
from kseg.errors import UserError
from tests.helpers import assert_predictions_colour_as_the_data, labels_by_name


def _shape(label, points, kind="polygon", **extra):
    """A shape as labelme writes it."""
    return {"label": label, "points": points, "group_id": None, "description": "",
            "shape_type": kind, "flags": {}, "mask": None, **extra}  # fmt: skip


def _mask_shape(label, pixels: np.ndarray):
    """labelme's mask shape (its AI tools'): the box of `pixels` and a PNG of it."""
    rows, cols = np.nonzero(pixels)
    y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
    png = io.BytesIO()
    Image.fromarray(pixels[y0 : y1 + 1, x0 : x1 + 1]).save(png, format="PNG")  # mode "1"
    mask = base64.b64encode(png.getvalue()).decode()
    return _shape(label, [[float(x0), float(y0)], [float(x1), float(y1)]], "mask", mask=mask)


def _annotate(json_path, image_path, shapes):
    """labelme's file for `image_path` (its path relative to the JSON file)."""
    with Image.open(image_path) as im:
        width, height = im.size
    record = {"version": "5.5.0", "flags": {}, "shapes": shapes,
              "imagePath": os.path.relpath(image_path, os.path.dirname(json_path)),
              "imageData": None, "imageHeight": height, "imageWidth": width}  # fmt: skip
    with open(json_path, "w") as f:
        json.dump(record, f)


def test_shapes_are_drawn_where_closed_forms_put_them():
    """Each shape type covers the pixels its geometry gives, a later shape over an earlier
    one, __ignore__ as 255, and what no shape covers is class 0."""
    values = {"background": 0, "car": 1, "road": 2, "__ignore__": 255}
    blob = np.zeros((5, 7), bool)
    blob[1:4, 2:6] = True
    shapes = [
        _shape("car", [[2, 3], [10, 7]], "rectangle"),  # corners inclusive
        _shape("road", [[6, 5], [20, 5], [20, 12], [6, 12]]),  # over the rectangle's right
        _shape("car", [[40, 20], [45, 20]], "circle"),  # centre, a point on the circle
        _shape("__ignore__", [[30, 2], [33, 4]], "rectangle"),
        _mask_shape("road", np.pad(blob, ((30, 5), (50, 3)))),
        _shape("car", [[2, 30], [20, 30]], "line"),  # 10 pixels wide
    ]
    label = draw_shapes({"imageHeight": 40, "imageWidth": 60, "shapes": shapes}, values)
    want = np.zeros((40, 60), np.uint8)
    want[3:8, 2:11] = 1
    want[5:13, 6:21] = 2
    want[2:5, 30:34] = 255
    want[31:34, 52:56] = 2
    np.testing.assert_array_equal(label[:14], want[:14])  # the circle starts at row 15
    np.testing.assert_array_equal(label[30:35, 50:], want[30:35, 50:])
    yy, xx = np.mgrid[:40, :60]
    distance = np.hypot(yy - 20, xx - 40)
    ring = (distance > 5.5) & (distance < 9)  # around the circle, away from the other cars
    assert (label[distance <= 4.5] == 1).all() and (label[ring] != 1).all()
    line = label[:, 8]  # across the line's middle: 10 pixels
    assert (line[25:36] == 1).sum() in (10, 11) and (line[20:25] == 0).all()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's real photos and their palette masks (5 classes, some 255)."""
    from kseg.data.demo_data import build_demo_folder

    root = tmp_path_factory.mktemp("demo") / "d"
    return build_demo_folder(str(root), train=10, val=2, height=64, width=128)


def _labelme_folder(root, demo, splits: bool):
    """The demo as labelme files: each image with a mask shape per class but class 0 (the
    background) and one labelled __ignore__; with `splits`, in train/ and val/."""
    masks = {}
    for split in ("train", "val"):
        folder = root / (split if splits else "")
        folder.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(demo, "images", split))):
            source = os.path.splitext(name)[0]
            mask = np.asarray(Image.open(os.path.join(demo, "masks", split, source + ".png")))
            stem = f"{split}_{source}"  # the demo's train and val reuse names
            shutil.copy(os.path.join(demo, "images", split, name), folder / f"{stem}.jpg")
            labels = {1: "building", 2: "road", 3: "car", 4: "person", 255: "__ignore__"}
            shapes = [_mask_shape(labels[v], mask == v) for v in np.unique(mask) if v in labels]
            _annotate(folder / f"{stem}.json", folder / f"{stem}.jpg", shapes)
            masks[stem] = mask
    return masks


def test_a_labelme_folder_reads_the_masks_it_was_drawn_from(demo, tmp_path):
    """FolderDataset opens a folder of labelme files as it is: with train/ and val/, and
    without them (a tenth held out); labelme's labels.txt (__ignore__, _background_)
    serves as the class list too."""
    root = tmp_path / "split"
    masks = _labelme_folder(root, demo, splits=True)
    (root / "classes.txt").write_text("sky\nbuilding\nroad\ncar\nperson\n")
    dataset = FolderDataset(str(root))
    assert isinstance(dataset, LabelmeFolder) and dataset.num_classes == 5
    for split, count in (("train", 10), ("val", 2)):
        read = labels_by_name(dataset, split)
        assert len(read) == count
        for stem, label in read.items():
            np.testing.assert_array_equal(label, masks[stem], err_msg=stem)

    root = tmp_path / "flat"
    masks = _labelme_folder(root, demo, splits=False)
    # as a Windows editor saves them: UTF-8 with a byte order mark, CRLF line ends
    windows = {"encoding": "utf-8-sig", "newline": "\r\n"}
    for path in root.glob("*.json"):
        path.write_text(path.read_text(encoding="utf-8"), **windows)
    (root / "labels.txt").write_text(
        "__ignore__\n_background_\nbuilding\nroad\ncar\nperson\n", **windows
    )
    dataset = FolderDataset(str(root))
    assert dataset.class_names == ("_background_", "building", "road", "car", "person")
    train, val = labels_by_name(dataset, "train"), labels_by_name(dataset, "val")
    assert len(train) == 11 and len(val) == 1 and not set(train) & set(val)
    for stem, label in {**train, **val}.items():
        np.testing.assert_array_equal(label, masks[stem], err_msg=stem)

    # kseg.export --calib-data takes the folder as it is (labels.txt, no classes.txt).
    import keras

    from kseg.export.__main__ import _calibration_dataset

    image = keras.Input((None, None, 3))
    five = keras.Model(image, keras.layers.Conv2D(5, 1)(image))
    assert isinstance(_calibration_dataset(five, str(root), None), LabelmeFolder)
    # kseg.predict and segment.py --classes labels.txt colour predictions as the data.
    assert_predictions_colour_as_the_data(root / "labels.txt", dataset.palette)


def test_labelme_mistakes_are_named(demo, tmp_path):
    """No class list (the labels found are listed), a label the list lacks, points that are
    not numbers, an image of another size than its file records, a missing image, and
    --mask-suffix: one message each, naming the file; --skip-bad-files leaves the bad files
    out and counts them."""
    root = tmp_path / "bad"
    _labelme_folder(root, demo, splits=True)
    some = sorted((root / "train").glob("*.json"))[0]
    record = json.loads(some.read_text())
    record["shapes"].append(_shape("__ignore__", [[0, 0], [3, 3]], "rectangle"))
    some.write_text(json.dumps(record))
    with pytest.raises(DatasetLayoutError) as error:  # __ignore__ is not a class
        FolderDataset(str(root))
    assert "e.g. background, building, car, person, road: the labels" in str(error.value)

    (root / "classes.txt").write_text("sky\nbuilding\nroad\ncar\n")  # no person
    with pytest.raises(CorruptFileError, match="labelled 'person', which classes.txt does not"):
        FolderDataset(str(root)).samples("train")
    (root / "classes.txt").write_text("sky\nbuilding\nroad\ncar\nperson\n")
    record["shapes"][-1]["points"] = [[0, 0], [3, "3"]]
    some.write_text(json.dumps(record))
    with pytest.raises(CorruptFileError, match=r"points are not \[x, y\] pairs of numbers"):
        FolderDataset(str(root)).samples("train")
    record["shapes"].pop()
    some.write_text(json.dumps(record))

    first, second = sorted((root / "val").glob("*.json"))
    record = json.loads(first.read_text())
    record["imageWidth"] = 100
    first.write_text(json.dumps(record))
    with pytest.raises(CorruptFileError, match=r"is 128x64 but .*val_photo000.json records 100x64"):
        FolderDataset(str(root)).samples("val")
    image = root / "val" / json.loads(second.read_text())["imagePath"]
    os.remove(image)
    with pytest.raises(CorruptFileError, match=f"val_photo001.json: no image {image}"):
        FolderDataset(str(root)).samples("val")
    skipping = FolderDataset(str(root), on_bad="skip")
    with pytest.warns(UserWarning, match="skipped 1 bad file"):
        assert skipping.samples("val") == []
    assert sum(skipping.skipped.values()) == 2
    with pytest.raises(UserError, match="labelme JSON files, which name their images"):
        FolderDataset(str(root), mask_suffix="_mask.png")


def test_images_embedded_in_labelme_files_are_read(demo, tmp_path, monkeypatch, capsys):
    """labelme files shared without their images (labelme embeds each image as base64
    imageData) train as they are: the embedded images are copied once to the Keras cache,
    the pipeline reads the same pixels and labels as from the images beside the files, and
    an imageData that is not an image is named."""
    from kseg.data.labelme import embedded_images_dir

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    root = tmp_path / "shared"
    masks = _labelme_folder(root, demo, splits=True)
    (root / "classes.txt").write_text("sky\nbuilding\nroad\ncar\nperson\n")

    beside = labels_by_name(FolderDataset(str(root)), "train", images=True)
    for path in sorted(root.glob("*/*.json")):
        record = json.loads(path.read_text())
        image = path.parent / record["imagePath"]
        record["imageData"] = base64.b64encode(image.read_bytes()).decode()
        path.write_text(json.dumps(record))
        os.remove(image)

    dataset = FolderDataset(str(root))
    embedded = labels_by_name(dataset, "train", images=True)
    assert "10 labelme file(s)" in capsys.readouterr().out
    assert sorted(embedded) == sorted(beside)
    for name, image in embedded.items():
        np.testing.assert_array_equal(image, beside[name], err_msg=name)
    for split in ("train", "val"):
        for name, label in labels_by_name(dataset, split).items():
            np.testing.assert_array_equal(label, masks[name], err_msg=name)
    copies = sorted(tmp_path.joinpath("keras").glob("kseg/labelme/*/*.jpg"))
    assert len(copies) == 12 and str(copies[0]).startswith(embedded_images_dir())
    written = [c.stat().st_mtime_ns for c in copies]
    FolderDataset(str(root)).samples("train")  # copied once, not again
    assert [c.stat().st_mtime_ns for c in copies] == written

    some = sorted((root / "val").glob("*.json"))[0]
    record = json.loads(some.read_text())
    record["imageData"] = base64.b64encode(b"not an image").decode()
    some.write_text(json.dumps(record))
    with pytest.raises(CorruptFileError, match="val_photo000.json: no image .* imageData is not"):
        FolderDataset(str(root)).samples("val")
