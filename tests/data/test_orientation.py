"""Photos with an EXIF orientation (every phone's portrait photos) are read as viewers show
them, against Pillow's `ImageOps.exif_transpose`: in the training pipeline, in the checks
of your own data, and in `kseg.predict`."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from kseg.data import FolderDataset, segmentation_pipeline
from kseg.data.orientation import ORIENTATION_TAG, decode_oriented_image
from kseg.predict import standalone

RED, BLUE = (220, 20, 20), (20, 20, 220)


def _save(path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decoded_image_is_pillows_exif_transpose(tmp_path, orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), np.uint8)
    path = tmp_path / "photo.png"  # lossless, so both decoders give the same pixels
    _save(path, pixels, orientation)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = decode_oriented_image(path.read_bytes()).numpy()
    np.testing.assert_array_equal(got, want)
    assert (got.shape[:2] == (7, 5)) == (orientation >= 5)


@pytest.fixture
def phone_photo_folder(tmp_path):
    """Your own data with one portrait phone photo: its JPEG holds the pixels turned a
    quarter counter-clockwise (landscape) with orientation 6, its mask is drawn upright
    (portrait), as labelling tools show the photo: red sky above, blue road below."""
    upright = np.zeros((64, 32, 3), np.uint8)
    upright[:32], upright[32:] = RED, BLUE
    mask = np.zeros((64, 32), np.uint8)
    mask[32:] = 1
    (tmp_path / "classes.txt").write_text("sky\nroad\n")
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
        stored = np.asarray(Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90))
        _save(tmp_path / "images" / split / "portrait.jpg", stored, orientation=6)
        Image.fromarray(mask).save(tmp_path / "masks" / split / "portrait.png")
    return tmp_path


def test_a_portrait_photo_and_its_mask_line_up(phone_photo_folder):
    dataset = FolderDataset(str(phone_photo_folder))
    samples = dataset.samples("train")  # before: "portrait.jpg is 64x32 but its label ..."
    (image, label), *_ = segmentation_pipeline(dataset, samples, 1, training=False)
    image, label = np.round(image.numpy()[0] * 255).astype(int), label.numpy()[0]
    assert image.shape == (64, 32, 3) and label.shape == (64, 32)
    # JPEG blurs the colours' border; away from it each class has its own colour.
    for cls, colour in ((0, RED), (1, BLUE)):
        rows = slice(4, 28) if cls == 0 else slice(36, 60)
        assert (label[rows] == cls).all()
        assert np.abs(image[rows] - colour).max() < 24


def test_predict_reads_a_portrait_photo_upright(phone_photo_folder):
    path = str(phone_photo_folder / "images" / "val" / "portrait.jpg")
    image = standalone.read_image(path).astype(int)
    assert image.shape == (64, 32, 3)
    assert np.abs(image[4:28] - RED).max() < 24 and np.abs(image[36:60] - BLUE).max() < 24
