"""Your own data stored as public datasets store it: masks named by another ending than
the image's (ISIC's NAME_segmentation.png, Carvana's NAME_mask.gif), JPEG masks
(Kvasir-SEG) and palette GIFs, paired and read to the labels they were drawn with."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from kseg.data import FolderDataset
from kseg.data.errors import DatasetLayoutError
from kseg.errors import UserError
from tests.helpers import labels_by_name


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    """The demo's real photos in one folder (no split folders), and for each the pixels of
    its road (class 2 of the demo's masks): the object of the binary datasets below."""
    from kseg.data.demo_data import build_demo_folder

    root = build_demo_folder(
        str(tmp_path_factory.mktemp("demo") / "d"), train=10, val=2, height=64, width=128
    )
    found = {}
    for split in ("train", "val"):
        for name in sorted(os.listdir(os.path.join(root, "images", split))):
            stem = os.path.splitext(name)[0]
            mask = np.asarray(Image.open(os.path.join(root, "masks", split, stem + ".png")))
            found[stem] = (os.path.join(root, "images", split, name), mask == 2)
    return found


def _binary_dataset(root, objects, save, classes="background 0 0 0\nroad 255 255 255\n"):
    """`objects` as a binary dataset in `root`: images/NAME.jpg, and each mask written by
    `save(mask 0/255 uint8, masks folder, NAME)`."""
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for stem, (image, mask) in objects.items():
        shutil.copy(image, root / "images" / f"{stem}.jpg")
        save(np.where(mask, 255, 0).astype(np.uint8), root / "masks", stem)
    (root / "classes.txt").write_text(classes)
    return str(root)


def _assert_reads_the_objects(dataset, objects):
    for split in ("train", "val"):
        for name, label in labels_by_name(dataset, split).items():
            np.testing.assert_array_equal(label, objects[name][1], err_msg=name)


def test_masks_named_by_another_ending_pair_by_the_ending_found(objects, tmp_path, capsys):
    """ISIC's NAME_segmentation.png and Carvana's NAME_mask.gif (a palette GIF of indices
    0 and 1) pair with NAME.jpg without being told, and read as the masks they were
    written from; a palette GIF of 0 and 255 reads by the greys of classes.txt."""

    def isic(mask, folder, name):
        Image.fromarray(mask).save(folder / f"{name}_segmentation.png")

    def carvana(mask, folder, name):
        Image.fromarray((mask > 0).astype(np.uint8), "L").convert("P").save(
            folder / f"{name}_mask.gif"
        )

    root = _binary_dataset(tmp_path / "isic", objects, isic)
    dataset = FolderDataset(root)
    _assert_reads_the_objects(dataset, objects)
    assert dataset.mask_suffix == "_segmentation.png"
    assert "masks pair with images by the ending '_segmentation.png'" in capsys.readouterr().out

    root = _binary_dataset(tmp_path / "carvana", objects, carvana, "background\ncar\n")
    with Image.open(os.path.join(root, "masks", f"{sorted(objects)[0]}_mask.gif")) as gif:
        assert gif.mode == "P"
    _assert_reads_the_objects(FolderDataset(root), objects)

    def drive(mask, folder, name):  # a black-and-white palette GIF: indices 0 and 255
        Image.fromarray(mask, "L").convert("P").save(folder / f"{name}_manual1.gif")

    root = _binary_dataset(tmp_path / "drive", objects, drive)
    _assert_reads_the_objects(FolderDataset(root), objects)


def test_jpeg_masks_read_by_the_nearest_class_colour(objects, tmp_path):
    """Kvasir-SEG's masks: RGB JPEGs of the same names, whose compression leaves values
    between 0 and 255 along every edge. Each pixel reads as the nearest colour of
    classes.txt, which recovers the drawn mask; without colours they are refused once,
    with the fix."""

    def kvasir(mask, folder, name):
        Image.fromarray(mask).convert("RGB").save(folder / f"{name}.jpg", quality=75)

    root = _binary_dataset(tmp_path / "kvasir", objects, kvasir)
    jpeg = np.asarray(Image.open(os.path.join(root, "masks", f"{sorted(objects)[0]}.jpg")))
    assert len(np.unique(jpeg)) > 10  # the edges are not 0 or 255
    dataset = FolderDataset(root)
    _assert_reads_the_objects(dataset, objects)
    assert dataset.mask_suffix == ".jpg"

    (tmp_path / "kvasir" / "classes.txt").write_text("background\npolyp\n")
    with pytest.raises(UserError) as error:
        FolderDataset(root).samples("train")
    message = str(error.value)
    assert message.startswith(f"kvasir: {len(objects) - 1} mask(s) are JPEG files")
    assert "`background 0 0 0` and `object 255 255 255`" in message


def test_the_ending_is_the_one_that_pairs_most_and_can_be_given(objects, tmp_path):
    """img1 is not paired with img10's mask; where two endings pair every image, .png
    wins, and mask_suffix (--mask-suffix) chooses; an ending without an extension and a
    folder where no image has its mask are one message each."""

    def both(mask, folder, name):
        Image.fromarray(mask).save(folder / f"{name}.png")
        Image.fromarray(255 - mask).save(folder / f"{name}_inverse.png")

    root = _binary_dataset(tmp_path / "two", objects, both)
    _assert_reads_the_objects(FolderDataset(root), objects)  # .png
    inverse = {name: (image, ~mask) for name, (image, mask) in objects.items()}
    _assert_reads_the_objects(FolderDataset(root, mask_suffix="_inverse.png"), inverse)
    with pytest.raises(UserError, match="give the whole ending .* e.g. _mask.png"):
        FolderDataset(root, mask_suffix="_inverse")

    prefix = tmp_path / "prefix"
    for folder in ("images", "masks"):
        os.makedirs(prefix / folder)
    first, second = sorted(objects)[:2]
    shutil.copy(objects[first][0], prefix / "images" / "img1.jpg")
    shutil.copy(objects[second][0], prefix / "images" / "img10.jpg")
    Image.fromarray(np.uint8(objects[first][1])).save(prefix / "masks" / "img1.png")
    Image.fromarray(np.uint8(objects[second][1])).save(prefix / "masks" / "img10.png")
    (prefix / "classes.txt").write_text("background\nroad\n")
    pairs = FolderDataset(str(prefix))._pairs("")
    assert [(os.path.basename(p.image), os.path.basename(p.label)) for p in pairs] == [
        ("img1.jpg", "img1.png"),
        ("img10.jpg", "img10.png"),
    ]

    def other_names(mask, folder, name):
        Image.fromarray(mask).save(folder / f"label-{name}.png")

    root = _binary_dataset(tmp_path / "none", objects, other_names)
    with pytest.raises(DatasetLayoutError) as error:
        FolderDataset(root).samples("train")
    message = str(error.value)
    assert f"none of the {len(objects)} images in " in message
    assert f"holds e.g. label-{sorted(objects)[0]}.png" in message
    assert "--mask-suffix _mask.png" in message


def test_mask_extensions_pair_in_any_case(objects, tmp_path, capsys):
    """Cameras and Windows tools write NAME.JPG and NAME.PNG: a mask whose extension is in
    capitals pairs with its image as a lower-case one does, mixed in one folder too, and
    without the "another ending" message; a suffix given in capitals pairs the same."""
    stems = sorted(objects)

    def mixed(mask, folder, name):
        extension = ".PNG" if stems.index(name) % 2 else ".png"
        Image.fromarray(mask).save(folder / f"{name}{extension}", format="png")

    root = _binary_dataset(tmp_path / "mixed", objects, mixed)
    os.rename(os.path.join(root, "images", f"{stems[1]}.jpg"),
              os.path.join(root, "images", f"{stems[1]}.JPG"))  # fmt: skip
    dataset = FolderDataset(root)
    _assert_reads_the_objects(dataset, objects)
    assert dataset.mask_suffix == ".png"
    assert "masks pair with images by the ending" not in capsys.readouterr().out
    pairs = dataset._pairs("")
    assert len(pairs) == len(objects)
    assert {os.path.basename(p.label) for p in pairs} == {
        f"{stem}{'.PNG' if k % 2 else '.png'}" for k, stem in enumerate(stems)
    }
    _assert_reads_the_objects(FolderDataset(root, mask_suffix=".PNG"), objects)


def test_the_custom_recipe_passes_mask_suffix_and_records_it(objects, tmp_path):
    """--mask-suffix reaches the reader and config.json; the other recipes do not take it."""
    from kseg.recipes import cityscapes, custom
    from kseg.recipes.cli import parse

    def both(mask, folder, name):
        Image.fromarray(mask).save(folder / f"{name}.png")
        Image.fromarray(255 - mask).save(folder / f"{name}_inverse.png")

    root = _binary_dataset(tmp_path / "two", objects, both)
    config = parse(custom.RECIPE, ["train", "--data-dir", root, "--mask-suffix", "_inverse.png"])
    assert config.to_json()["mask_suffix"] == "_inverse.png"
    dataset = custom.RECIPE.open(config, str(tmp_path / "run"))
    assert {os.path.basename(s.label)[-12:] for s in dataset.samples("val")} == {"_inverse.png"}
    with pytest.raises(SystemExit):
        parse(cityscapes.RECIPE, ["train", "--data-dir", root, "--mask-suffix", "_x.png"])
