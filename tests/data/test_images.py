"""Image files as the training pipeline and `kseg.predict` read them: every format the data
checks accept (TIFF and 16-bit images too), and photos with an EXIF orientation (every
phone's portrait photos) as viewers show them, against Pillow's `ImageOps.exif_transpose`."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from kseg.data import FolderDataset, segmentation_pipeline
from kseg.data.images import ORIENTATION_TAG, decode_image
from kseg.predict import standalone

RED, BLUE = (220, 20, 20), (20, 20, 220)


def _save(path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes())


@pytest.mark.parametrize("suffix", ["png", "jpg", "tif"])  # TensorFlow's decoders, Pillow's
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decoded_image_is_pillows_exif_transpose(tmp_path, orientation, suffix):
    """The training pipeline's pixels are Pillow's, which `kseg.predict`, `segment.py` and
    labelling tools show: JPEG too (libjpeg's accurate DCT; TensorFlow's default fast one
    is off by up to a dozen levels on noise)."""
    pixels = np.random.default_rng(orientation).integers(0, 256, (40, 56, 3), np.uint8)
    path = tmp_path / f"photo.{suffix}"
    _save(path, pixels, orientation)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = decode_image(path.read_bytes()).numpy()
    np.testing.assert_array_equal(got, want)
    assert (got.shape[:2] == (56, 40)) == (orientation >= 5)


def test_16_bit_images_keep_their_top_byte_in_every_reader(tmp_path):
    """A 16-bit greyscale PNG through TensorFlow's decoder, the same as TIFF through Pillow,
    and `kseg.predict`'s reading of both: each value v becomes v >> 8 in all three channels
    (Pillow's own conversion to RGB would clip everything above 255 to white)."""
    values = np.random.default_rng(0).integers(0, 65536, (16, 16), dtype=np.uint16)
    values[0, :2] = 511, 65535  # the top byte, not rounding (511 -> 1, not 2)
    want = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    for suffix in ("png", "tif"):
        path = tmp_path / f"depth.{suffix}"
        Image.fromarray(values).save(path)
        np.testing.assert_array_equal(decode_image(path.read_bytes()).numpy(), want)
        np.testing.assert_array_equal(standalone.read_image(str(path)), want)


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


def test_a_tiff_photo_trains_and_evaluates(phone_photo_folder):
    """Your own data as TIFF (the layout accepts .tif): through the training pipeline's
    augmentation and the evaluation pipeline, the same pixels as the JPEG's upright."""
    for split in ("train", "val"):
        jpeg = phone_photo_folder / "images" / split / "portrait.jpg"
        with Image.open(jpeg) as im:
            upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        Image.fromarray(upright).save(jpeg.with_suffix(".tif"))
        jpeg.unlink()
    dataset = FolderDataset(str(phone_photo_folder))
    (image, label), *_ = segmentation_pipeline(dataset, dataset.samples("val"), 1, training=False)
    np.testing.assert_array_equal(np.round(image.numpy()[0] * 255), upright)
    train = segmentation_pipeline(dataset, dataset.samples("train"), 1, True, crop=(32, 32))
    (image, label), *_ = train
    assert image.shape == (1, 32, 32, 3) and set(np.unique(label)) <= {0, 1, 255}


def test_an_iphones_heic_photo_trains_upright_as_predict_reads_it(phone_photo_folder):
    """iPhones' HEIC photos in your own data (through pillow-heif): the portrait photo's
    landscape pixels saved as HEIC with their rotation pass the size check against the
    upright mask, and the pipeline reads the pixels `kseg.predict` reads, upright."""
    for split in ("train", "val"):
        jpeg = phone_photo_folder / "images" / split / "portrait.jpg"
        with Image.open(jpeg) as im:
            stored, exif = np.asarray(im), im.info["exif"]
        standalone.heif_opener()
        Image.fromarray(stored).save(jpeg.with_suffix(".heic"), exif=exif, quality=95)
        jpeg.unlink()
    dataset = FolderDataset(str(phone_photo_folder))
    samples = dataset.samples("val")
    assert samples[0].image.endswith("portrait.heic")
    (image, label), *_ = segmentation_pipeline(dataset, samples, 1, training=False)
    image = np.round(image.numpy()[0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(image, standalone.read_image(samples[0].image))
    image = image.astype(int)
    assert np.abs(image[4:28] - RED).max() < 24 and np.abs(image[36:60] - BLUE).max() < 24
    assert (label.numpy()[0][32:] == 1).all()
    train = segmentation_pipeline(dataset, dataset.samples("train"), 1, True, crop=(32, 32))
    (image, label), *_ = train
    assert image.shape == (1, 32, 32, 3)


def test_a_heic_photo_cut_short_is_named_before_training(phone_photo_folder):
    """A HEIC photo cut short by an interrupted copy keeps its header; the checks decode it
    (Pillow, through pillow-heif) and name it."""
    from kseg.data.errors import CorruptFileError

    jpeg = phone_photo_folder / "images" / "train" / "portrait.jpg"
    heic = jpeg.with_suffix(".heic")
    standalone.heif_opener()
    with Image.open(jpeg) as im:
        ImageOps.exif_transpose(im).save(heic, quality=95)
    jpeg.unlink()
    data = heic.read_bytes()
    heic.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptFileError, match=rf"{heic}: unreadable \(Pillow's decoder: "):
        FolderDataset(str(phone_photo_folder)).samples("train")


def test_heic_photos_without_pillow_heif_say_how_to_install_it(phone_photo_folder, monkeypatch):
    import sys

    from kseg.errors import UserError

    jpeg = phone_photo_folder / "images" / "train" / "portrait.jpg"
    jpeg.rename(jpeg.with_suffix(".heic"))  # the checks stop before reading it
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # not installed
    standalone.heif_opener.cache_clear()
    try:
        with pytest.raises(UserError, match="HEIC/HEIF photos need pillow-heif: pip install"):
            FolderDataset(str(phone_photo_folder)).samples("train")
    finally:
        standalone.heif_opener.cache_clear()
