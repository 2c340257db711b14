"""Your own data as annotation platforms export it in the COCO format (CVAT, Roboflow,
Label Studio, the COCO dataset's own layout), read as it is: the demo's real masks
exported as run-length masks and polygons read back exactly, splits found by name, and
each mistake named."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from kseg.data import CocoFolder, FolderDataset
from kseg.data.errors import CorruptFileError, DatasetLayoutError
from tests.helpers import labels_by_name

CATEGORIES = [{"id": i, "name": n, "supercategory": ""}
              for i, n in enumerate(["building", "road", "car", "person"], start=1)]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's real photos and their masks: sky (0, the background here), building,
    road, car, person."""
    from kseg.data.demo_data import build_demo_folder

    root = tmp_path_factory.mktemp("demo") / "d"
    return build_demo_folder(str(root), train=10, val=2, height=64, width=128)


def _objects(mask: np.ndarray, image_id: int, first_id: int) -> list[dict]:
    """One object a class the mask shows (but class 0): compressed run lengths, as CVAT
    and Label Studio write masks, and uncompressed ones for roads, as crowds are."""
    objects = []
    for value in (v for v in np.unique(mask) if 0 < v < 255):
        rle = coco_mask.encode(np.asfortranarray((mask == value).astype(np.uint8)))
        if value == 2:  # column by column, run lengths of 0s and 1s in turn, 0s first
            pixels = (mask == value).ravel(order="F").astype(np.int8)
            bounds = [0, *(np.flatnonzero(np.diff(pixels)) + 1), len(pixels)]
            runs = [0] * int(pixels[0]) + np.diff(bounds).tolist()
            segmentation = {"size": list(mask.shape), "counts": runs}
        else:
            segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
        objects.append({"id": first_id + len(objects), "image_id": image_id,
                        "category_id": int(value), "segmentation": segmentation,
                        "iscrowd": int(value == 2), "area": int((mask == value).sum()),
                        "bbox": [0, 0, 1, 1]})  # fmt: skip
    return objects


def _export(demo, json_path, image_dir, splits=("train", "val")):
    """The demo's `splits` as one COCO file at `json_path`, images copied to `image_dir`;
    returns {image name: mask}."""
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations, masks = [], [], {}
    for split in splits:
        for file in sorted(os.listdir(os.path.join(demo, "images", split))):
            stem = f"{split}_{os.path.splitext(file)[0]}"
            mask = np.asarray(Image.open(os.path.join(demo, "masks", split, file[:-4] + ".png")))
            shutil.copy(
                os.path.join(demo, "images", split, file),
                os.path.join(image_dir, f"{stem}.jpg"),
            )
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": f"{stem}.jpg",
                           "height": mask.shape[0], "width": mask.shape[1]})  # fmt: skip
            annotations += _objects(mask, image_id, len(annotations) + 1)
            masks[stem] = mask
    with open(json_path, "w") as f:
        json.dump({"info": {}, "licenses": [], "images": images, "annotations": annotations,
                   "categories": CATEGORIES}, f)  # fmt: skip
    return masks


def _assert_reads(dataset, masks, split, count):
    read = labels_by_name(dataset, split)
    assert len(read) == count
    for stem, label in read.items():
        np.testing.assert_array_equal(label, masks[stem], err_msg=stem)


def test_coco_exports_read_the_masks_they_were_made_from(demo, tmp_path):
    """Roboflow's split folders, the COCO dataset's instances_{train,val}2017.json with
    train2017/ and val2017/, and CVAT's single instances_default.json (a tenth held out):
    each reads the demo's masks exactly, the classes background and the categories."""
    root = tmp_path / "roboflow"
    masks = _export(demo, root / "train" / "_annotations.coco.json", root / "train", ["train"])
    masks |= _export(demo, root / "valid" / "_annotations.coco.json", root / "valid", ["val"])
    dataset = FolderDataset(str(root))
    assert isinstance(dataset, CocoFolder)
    assert dataset.class_names == ("background", "building", "road", "car", "person")
    _assert_reads(dataset, masks, "train", 10)
    _assert_reads(dataset, masks, "val", 2)
    from kseg.export.__main__ import _reader_of

    assert _reader_of(str(root), None) == "custom"  # export --calib-data takes it

    root = tmp_path / "coco"
    masks = {}
    for split, year in (("train", "train2017"), ("val", "val2017")):
        masks |= _export(
            demo, root / "annotations" / f"instances_{year}.json", root / year, [split]
        )
    _assert_reads(FolderDataset(str(root)), masks, "train", 10)
    _assert_reads(FolderDataset(str(root)), masks, "val", 2)

    root = tmp_path / "cvat"
    masks = _export(demo, root / "annotations" / "instances_default.json", root / "images")
    dataset = FolderDataset(str(root))
    train, val = labels_by_name(dataset, "train"), labels_by_name(dataset, "val")
    assert len(train) == 11 and len(val) == 1 and not set(train) & set(val)
    for stem, label in {**train, **val}.items():
        np.testing.assert_array_equal(label, masks[stem], err_msg=stem)


def test_polygons_as_the_coco_api_draws_them_later_objects_on_top(demo, tmp_path):
    """Polygons (two for one object) are the pixels pycocotools' COCO.annToMask gives;
    where objects overlap, the later one in the file is seen. Label Studio's server paths
    find the images by their file names."""
    from pycocotools.coco import COCO

    root = tmp_path / "polygons"
    _export(demo, root / "result.json", root / "images", ["val"])  # Label Studio's name
    path = root / "result.json"
    data = json.loads(path.read_text())
    for image in data["images"]:  # as Label Studio names them: found by file name in images/
        image["file_name"] = f"/data/upload/1/{image['file_name']}"
    first = data["images"][0]["id"]
    square = [10.5, 4.0, 40.0, 4.0, 40.0, 30.25, 10.5, 30.25]
    triangle = [50, 40, 90, 60, 60, 62]
    data["annotations"] += [
        {"id": 100, "image_id": first, "category_id": 3, "segmentation": [square, triangle],
         "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]},
        {"id": 101, "image_id": first, "category_id": 4,
         "segmentation": [[20, 10, 30, 10, 30, 20, 20, 20]],
         "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]},
    ]  # fmt: skip
    path.write_text(json.dumps(data))
    dataset = FolderDataset(str(root))  # a file of no split: a tenth (one image) validates
    read = {**labels_by_name(dataset, "train"), **labels_by_name(dataset, "val")}
    label = read["val_photo000"]
    api = COCO(str(path))
    car = api.annToMask(api.anns[100]).astype(bool)
    person = api.annToMask(api.anns[101]).astype(bool)
    assert car.sum() > 500 and person.sum() > 50 and (car & person).any()
    assert (label[person] == 4).all() and (label[car & ~person] == 3).all()


def test_coco_mistakes_are_named(demo, tmp_path):
    """A missing image, an image of another size than the file records, an object with
    only a box, and two splits that number the categories differently."""
    root = tmp_path / "bad"
    _export(demo, root / "annotations" / "instances_train.json", root / "images", ["train"])
    _export(demo, root / "annotations" / "instances_val.json", root / "images", ["val"])
    path = root / "annotations" / "instances_val.json"
    data = json.loads(path.read_text())
    data["images"][0]["width"] = 100
    data["annotations"][-1]["segmentation"] = []
    path.write_text(json.dumps(data))
    os.remove(root / "images" / "train_photo003.jpg")
    with pytest.raises(CorruptFileError, match=r"instances_train.json#4: no image .*photo003.jpg"):
        FolderDataset(str(root)).samples("train")
    with pytest.raises(CorruptFileError) as error:
        FolderDataset(str(root), on_bad="raise").samples("val")
    assert "val_photo000.jpg is 128x64 but" in str(error.value)
    skipping = FolderDataset(str(root), on_bad="skip")
    with pytest.warns(UserWarning, match="skipped"):
        assert len(skipping.samples("val")) == 0
    data["images"][0]["width"] = 128
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptFileError, match="has no segmentation .* a box alone"):
        FolderDataset(str(root)).samples("val")
    data["annotations"][-1]["segmentation"] = {"size": [32, 64], "counts": [0, 2048]}
    path.write_text(json.dumps(data))
    with pytest.raises(
        CorruptFileError, match=r"are of a \[32, 64\] image, the file's is \[64, 128\]"
    ):
        FolderDataset(str(root)).samples("val")

    data["categories"][0]["name"] = "house"
    path.write_text(json.dumps(data))
    with pytest.raises(
        DatasetLayoutError, match="names category 1 'house', another file 'building'"
    ):
        FolderDataset(str(root))
