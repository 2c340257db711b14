"""`kseg.data.decode_check`: the image files TensorFlow cannot decode and the TIFF files
cut short, against Pillow reading each file whole, and the errors of a pipeline that
stopped at one."""

import io
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kseg.data.decode_check import decode_failure, tiff_cut_short, undecodable


def _jpeg(seed=0, mode="RGB", size=(96, 64)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def files(tmp_path):
    """Files under image names as a dataset may hold them: good ones in the formats
    ImageNet's train set mixes in (a CMYK JPEG, a PNG named .JPEG), a GIF, and bad ones."""
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, "PNG")
    gif = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gif, "GIF")
    contents = {
        "good.jpg": _jpeg(),
        "cmyk.JPEG": _jpeg(1, mode="CMYK"),
        "png_named.JPEG": png.getvalue(),
        "anim.gif": gif.getvalue(),
        "cut.jpg": _jpeg(2)[: len(_jpeg(2)) // 2],  # an interrupted copy: its header whole
        "empty.jpg": b"",
        "page.jpg": b"<html>404 Not Found</html>",  # a download that saved an error page
    }
    paths = {}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = str(tmp_path / name)
    return paths


def _pillow_reads_whole(path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def test_the_files_that_do_not_decode_are_those_pillow_cannot_read_whole(files):
    problems = undecodable(files.values())
    assert list(problems) == [p for p in files.values() if not _pillow_reads_whole(p)]
    assert list(problems) == [files["cut.jpg"], files["empty.jpg"], files["page.jpg"]]
    assert problems[files["empty.jpg"]] == (
        f"{files['empty.jpg']}: unreadable (TensorFlow's decoder: Input is empty.)"
    )
    assert "Unknown image file format" in problems[files["page.jpg"]]
    assert undecodable([]) == {}


def test_a_cut_file_passes_a_check_of_its_header_and_a_crop_of_its_top(files):
    """Why every file is decoded whole: the cut JPEG's size reads, and so does a training
    crop of its top rows; only a window reaching the lost half fails."""
    contents = tf.io.read_file(files["cut.jpg"])
    assert tf.image.extract_jpeg_shape(contents).numpy().tolist() == [64, 96, 3]
    with Image.open(files["cut.jpg"]) as im:
        assert im.size == (96, 64)
    assert tf.image.decode_and_crop_jpeg(contents, [0, 0, 8, 8]).shape == (8, 8, 3)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.image.decode_and_crop_jpeg(contents, [56, 0, 8, 8])


def test_a_pipeline_stopped_by_a_decoder_is_known_and_other_errors_are_not(files):
    ds = tf.data.Dataset.from_tensor_slices([files["good.jpg"], files["cut.jpg"]])
    ds = ds.map(lambda p: tf.io.decode_jpeg(tf.io.read_file(p)), num_parallel_calls=2)
    with pytest.raises(tf.errors.InvalidArgumentError) as stop:
        list(ds)
    reason = "jpeg::Uncompress failed. Invalid JPEG data or crop window."
    assert decode_failure(stop.value) == reason
    with pytest.raises(tf.errors.InvalidArgumentError) as other:
        tf.reshape(tf.zeros(3), [2])
    assert decode_failure(other.value) is None
    assert decode_failure(ValueError("DecodeJpeg failed")) is None


def test_a_tiff_cut_short_is_found_from_its_strip_table(tmp_path):
    """An uncompressed TIFF keeps its header first, so one cut short opens and gives its
    size; its strips then end past the file's end. The TIFFs found are those Pillow
    cannot load whole; an LZW one cut short loses its header (Pillow writes it last) and
    is the header check's."""
    pixels = np.random.default_rng(4).integers(0, 256, (60, 80, 3), np.uint8)
    paths = []
    for name, options in [("plain", {}), ("lzw", {"compression": "tiff_lzw"}),
                          ("grey16", {})]:  # fmt: skip
        grey16 = pixels[..., 0].astype(np.uint16) * 257
        image = Image.fromarray(grey16 if name == "grey16" else pixels)
        image.save(tmp_path / f"{name}.tif", **options)
        paths.append(str(tmp_path / f"{name}.tif"))
    cut = tmp_path / "cut.tif"
    cut.write_bytes((tmp_path / "plain.tif").read_bytes()[:10000])
    paths.append(str(cut))
    with Image.open(cut) as im:
        assert im.size == (80, 60)
    problems = tiff_cut_short(paths)
    assert list(problems) == [p for p in paths if not _pillow_reads_whole(p)] == [str(cut)]
    said = re.fullmatch(
        rf"{re.escape(str(cut))}: unreadable \(cut short: its image data ends at byte "
        r"([\d,]+), the file at byte 10,000\)",
        problems[str(cut)],
    )
    assert said and int(said.group(1).replace(",", "")) >= 60 * 80 * 3  # the pixels' bytes


def test_a_reader_decodes_each_file_once_however_often_a_run_asks(tmp_path, monkeypatch):
    """A run asks for a split's samples for training, again for evaluation and for export
    calibration: the files are decoded the first time only."""
    from kseg.data import FolderDataset, decode_check
    from kseg.data.demo_data import build_demo_folder

    root = build_demo_folder(str(tmp_path / "data"), train=4, val=2, height=32, width=64)
    decoded = []
    real = decode_check.undecodable

    def counting(paths):
        paths = list(paths)
        decoded.extend(paths)
        return real(paths)

    monkeypatch.setattr(decode_check, "undecodable", counting)
    dataset = FolderDataset(root)
    first = dataset.samples("train")
    assert sorted(decoded) == sorted(s.image for s in first)  # the JPEG photos, not the PNGs
    decoded.clear()
    assert dataset.samples("train") == first and dataset.samples("val") and len(decoded) == 2


def test_files_decoded_before_and_unchanged_since_are_not_decoded_again(
    files, tmp_path, monkeypatch
):
    """A second check over the same files decodes only the bad ones (never remembered) and
    those written since; a good file cut short afterwards is found, by its new size and
    time; without the record (`remember=False`) every file is decoded."""
    from kseg.data import decode_check

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    decoded = []
    real = decode_check._decode_all

    def counting(paths):
        decoded.append(sorted(paths))
        return real(paths)

    monkeypatch.setattr(decode_check, "_decode_all", counting)
    first = undecodable(files.values())
    bad = sorted(first)
    assert decoded.pop() == sorted(files.values())
    assert undecodable(files.values()) == first and decoded.pop() == bad

    good = files["good.jpg"]
    data = open(good, "rb").read()
    with open(good, "wb") as f:
        f.write(data[: len(data) // 2])
    again = undecodable(files.values())
    assert decoded.pop() == sorted([*bad, good]) and good in again
    assert undecodable(files.values(), remember=False).keys() == again.keys()
    assert decoded.pop() == sorted(files.values())
