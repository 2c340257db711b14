"""`python -m kseg.data.tile`: tiles hold the pixels and classes training reads from the
whole images (read back through the same decoder), training tiles are whole and overlap,
validation tiles cover each image once, and images too large to train on are named with
what to do."""

import os
import re
import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kseg.data import FolderDataset
from kseg.data.errors import CorruptFileError
from kseg.data.pipeline import make_decoder
from kseg.data.tile import main, tile_dataset, tile_starts
from kseg.errors import UserError

TILE = re.compile(r"^(.+)_y(\d+)_x(\d+)\.png$")


def test_tile_starts():
    assert tile_starts(100, 40, overlap=8) == [0, 32, 60]  # the last ends at the border
    assert tile_starts(100, 40, cover_once=True) == [0, 40, 80]  # the last 20 pixels long
    assert tile_starts(30, 40) == [0] == tile_starts(30, 40, cover_once=True)
    assert tile_starts(80, 40) == [0, 40]


def _decoded(dataset, sample) -> tuple[np.ndarray, np.ndarray]:
    decode = tf.function(make_decoder(dataset))
    image, label = decode(tf.constant(sample.image), tf.constant(sample.label))
    return image.numpy(), label.numpy()


def test_tiles_hold_what_training_reads_of_the_whole_images(tmp_path, capsys):
    """The demo folder (JPEG photos, palette masks, coloured classes.txt, a test split) cut
    into 40x48 tiles sharing 8 pixels: each tile, read back as your own data, is the window
    of the whole image's decoded pixels and classes at the corner its name gives; training
    tiles are whole and cover every labelled pixel, validation and test tiles cover each
    pixel once, and a window whose mask is all ignore is left out. The tiles' folder is
    refused as --out of a second run."""
    from kseg.data.demo_data import build_demo_folder

    root = build_demo_folder(str(tmp_path / "data"), train=3, val=2, height=64, width=100)
    for kind in ("images", "masks"):  # a test split too: cut as validation is
        shutil.copytree(os.path.join(root, kind, "val"), os.path.join(root, kind, "test"))
    source = FolderDataset(root)
    samples = {s: source.samples(s) for s in ("train", "val", "test")}
    unlabelled = samples["train"][0].label  # its top-left tile's window: all ignore
    with Image.open(unlabelled) as im:
        mask = np.array(im)
        palette = im.getpalette()
    mask[:40, :48] = 255
    written = Image.fromarray(mask, "P")
    written.putpalette(palette)
    written.save(unlabelled)

    out = str(tmp_path / "tiles")
    main([root, "--out", out, "--size", "40x48", "--overlap", "8"])
    printed = capsys.readouterr().out
    # train: rows at 0, 24 and columns at 0, 40, 52 (moved back to end at 100): 6 a photo
    # val: rows at 0, 40 and columns at 0, 48, 96: 6 a photo, the last ones smaller
    assert "train: 3 image(s) -> 17 tiles (1 wholly unlabelled left out)" in printed
    assert "val: 2 image(s) -> 12 tiles" in printed and "test: 2 image(s) -> 12 tiles" in printed

    tiles = FolderDataset(out)
    assert tiles.class_names == source.class_names
    np.testing.assert_array_equal(tiles.mask_colours, source.mask_colours)
    for split in ("train", "val", "test"):
        whole = {os.path.splitext(os.path.basename(s.image))[0]: _decoded(source, s)
                 for s in samples[split]}  # fmt: skip
        covered = {name: np.zeros(label.shape, int) for name, (_, label) in whole.items()}
        for t in tiles.samples(split):
            name, y, x = TILE.match(os.path.basename(t.image)).groups()
            y, x = int(y), int(x)
            image, label = _decoded(tiles, t)
            h, w = label.shape
            if split == "train":
                assert (h, w) == (40, 48)
            np.testing.assert_array_equal(image, whole[name][0][y : y + h, x : x + w])
            np.testing.assert_array_equal(label, whole[name][1][y : y + h, x : x + w])
            covered[name][y : y + h, x : x + w] += 1
        for name, (_, label) in whole.items():
            labelled = label != 255
            if split == "train":
                assert (covered[name][labelled] >= 1).all() and covered[name].max() > 1
            else:
                np.testing.assert_array_equal(covered[name], 1)

    with pytest.raises(UserError, match="exists and is not empty; kseg does not write into"):
        tile_dataset(root, out, (40, 48))
    assert sorted(os.listdir(tmp_path)) == ["data", "tiles"]  # nothing half-written left


def _png_header(path, width: int, height: int) -> None:
    """A PNG of `width` x `height` grey pixels with no pixel data: its header is all the
    checks read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _one_image(root, width: int, height: int) -> None:
    for split in ("train", "val"):
        for kind in ("images", "masks"):
            os.makedirs(root / kind / split)
            _png_header(root / kind / split / "ortho.png", width, height)
    (root / "classes.txt").write_text("background\nbuilding\n")


def test_an_image_too_large_to_train_on_whole_is_named_with_the_tile_command(tmp_path):
    """20000x20000 pixels, over Pillow's limit: the checks say so and name the tile command
    (Pillow's own error speaks of a decompression-bomb attack); 40000x40000, over kseg's
    limit, the tile command refuses naming it."""
    root = tmp_path / "big"
    _one_image(root, 20000, 20000)
    with pytest.raises(CorruptFileError) as error:
        FolderDataset(str(root)).samples("train")
    image = root / "images" / "train" / "ortho.png"
    assert (f"{image}: too large to train on whole (20000x20000, 400,000,000 pixels; Pillow "
            "reads up to 178,956,970): cut your data into tiles with python -m "
            "kseg.data.tile") in str(error.value)  # fmt: skip

    huge = tmp_path / "huge"
    _one_image(huge, 40000, 40000)
    with pytest.raises(UserError, match=r"40000x40000 is 1,600,000,000 pixels, over the limit "
                       r"of 1,073,741,824; cut it into parts first"):  # fmt: skip
        tile_dataset(str(huge), str(tmp_path / "tiles"), (1024, 1024))
    assert sorted(os.listdir(tmp_path)) == ["big", "huge"]
