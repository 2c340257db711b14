"""tf.data pipelines: determinism, padding with the ignore label, flip and scale."""

import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image

from kseg.data import Augmentation, Cityscapes, Sample, segmentation_pipeline
from kseg.data.pipeline import _window_from_sources, augment, scaled_window

NO_JITTER = dict(hue=0.0, saturation=(1.0, 1.0), brightness=0.0, contrast=(1.0, 1.0))


def _cityscapes(root):
    data = Cityscapes(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data, data.samples("train")


def _batches(ds, n=2):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_same_seed_same_batches_other_seed_other_batches(demo_cityscapes):
    data, samples = _cityscapes(demo_cityscapes)

    def run(seed):
        ds = segmentation_pipeline(data, samples, 2, training=True, crop=(32, 64), seed=seed)
        return _batches(ds, 3)

    a, b, c = run(1), run(1), run(2)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))
    x, y = a[0]
    assert x.shape == (2, 32, 64, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0


def _coded_pair(h=40, w=60):
    """An image whose grey level encodes its label, so any geometric op must keep the pair."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 12, (h, w)).astype(np.uint8)
    image = np.repeat((label * 20)[..., None], 3, axis=-1).astype(np.uint8)
    return tf.constant(image), tf.constant(label)


def test_crop_pads_with_ignore_and_flip_keeps_image_and_label_together():
    image, label = _coded_pair()
    aug = Augmentation(scale_range=(1.0, 1.0), flip=True, **NO_JITTER)
    flipped = 0
    for s in range(8):
        x, y = augment(image, label, tf.constant([s, 7], tf.int64), (64, 64), aug)
        x, y = x.numpy(), y.numpy()
        valid = y != 255
        assert valid.sum() == 40 * 60  # the whole image, the rest padded with 255
        np.testing.assert_array_equal(np.round(x[..., 0] * 255 / 20)[valid], y[valid])
        assert np.all(x[~valid] == 0)
        rows, cols = np.nonzero(valid)
        window = y[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        flipped += np.array_equal(window, label.numpy()[:, ::-1])
    assert 0 < flipped < 8  # both orientations occur


def _resized_then_cropped(image, label, new_size, corner, window):
    """What `scaled_window` computes, written plainly: the whole image and label resized by
    `tf.image.resize`, padded to at least the window, then cropped."""
    img = tf.image.resize(tf.cast(image, tf.float32) / 255.0, new_size, method="bilinear")
    lab = tf.cast(tf.image.resize(label[..., None], new_size, method="nearest")[..., 0], tf.int32)
    pad = [max(window[i] - new_size[i], 0) for i in (0, 1)]
    img = tf.pad(img, [[0, pad[0]], [0, pad[1]], [0, 0]])
    lab = tf.pad(lab, [[0, pad[0]], [0, pad[1]]], constant_values=255)
    (y, x), (h, w) = corner, window
    return img[y : y + h, x : x + w], lab[y : y + h, x : x + w]


def test_scaled_window_is_tf_image_resize_then_crop():
    """Bit for bit, at scales down and up (ties of the nearest neighbour included: 2x, 4/3),
    windows inside, across the edges and larger than the resized image; both ways of
    computing it (from the window's source pixels alone, which `scaled_window` takes for
    small windows, and by resizing whole) in every case."""
    rng = np.random.default_rng(0)
    cases = 0
    for h, w in ((40, 60), (37, 23), (96, 128)):
        image = tf.constant(rng.integers(0, 256, (h, w, 3)), tf.uint8)
        label = tf.constant(rng.integers(0, 19, (h, w)), tf.uint8)
        for new in ((h // 2, w // 2), (h * 3 // 4, w * 4 // 3), (h * 2, w * 2), (h + 7, w - 5)):
            for window in ((16, 16), (h, w), (2 * h + 9, 2 * w + 9)):
                ys = rng.integers(0, max(new[0], window[0]) - window[0] + 1, 3)
                xs = rng.integers(0, max(new[1], window[1]) - window[1] + 1, 3)
                for corner in zip(ys.tolist(), xs.tolist(), strict=True):
                    want = _resized_then_cropped(image, label, new, corner, window)
                    args = image, label, tf.constant(new), tf.constant(corner), window
                    for way in (scaled_window, _window_from_sources):
                        got = way(*args)
                        np.testing.assert_array_equal(got[0], want[0])
                        np.testing.assert_array_equal(got[1], want[1])
                    cases += 1
    assert cases == 108
    # A label of another size than its image (as an unverified pair may have) is resized
    # from its own size, as tf.image.resize resizes it.
    image = tf.constant(rng.integers(0, 256, (40, 60, 3)), tf.uint8)
    label = tf.constant(rng.integers(0, 19, (20, 30)), tf.uint8)
    new, corner = (160, 240), (50, 70)
    want = _resized_then_cropped(image, label, new, corner, (16, 16))
    got = _window_from_sources(image, label, tf.constant(new), tf.constant(corner), (16, 16))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_random_scale_stays_in_range():
    image, label = _coded_pair()
    aug = Augmentation(scale_range=(0.5, 2.0), flip=False, **NO_JITTER)
    areas = []
    for s in range(12):
        _, y = augment(image, label, tf.constant([s, 1], tf.int64), (128, 128), aug)
        areas.append(int((y.numpy() != 255).sum()))
    scales = np.sqrt(np.array(areas) / (40 * 60))
    assert scales.min() >= 0.5 - 0.03 and scales.max() <= 2.0 + 0.03
    assert scales.max() - scales.min() > 0.5


def test_colour_jitter_changes_colours_not_labels():
    image, label = _coded_pair()
    plain = Augmentation(scale_range=(1.0, 1.0), flip=False, **NO_JITTER)
    jitter = Augmentation(scale_range=(1.0, 1.0), flip=False)
    seed = tf.constant([3, 4], tf.int64)
    x0, y0 = augment(image, label, seed, (40, 60), plain)
    x1, y1 = augment(image, label, seed, (40, 60), jitter)
    np.testing.assert_array_equal(y0, y1)
    assert np.abs(x0.numpy() - x1.numpy()).max() > 0.01


def test_evaluation_pads_whole_images_to_the_model_multiple(tmp_path):
    data_root = tmp_path / "cs"
    for split, size in (("val", (50, 70)),):
        img_dir = data_root / "leftImg8bit" / split / "c"
        lab_dir = data_root / "gtFine" / split / "c"
        os.makedirs(img_dir)
        os.makedirs(lab_dir)
        Image.new("RGB", size[::-1], (255, 0, 0)).save(img_dir / "c_0_0_leftImg8bit.png")
        Image.fromarray(np.full(size, 7, np.uint8)).save(lab_dir / "c_0_0_gtFine_labelIds.png")
    data = Cityscapes(str(data_root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = data.samples("val")
    ((x, y),) = _batches(
        segmentation_pipeline(data, samples, 1, training=False, pad_multiple=32), 1
    )
    assert x.shape == (1, 64, 96, 3) and y.shape == (1, 64, 96)
    assert np.all(y[0, :50, :70] == 0) and np.all(y[0, 50:] == 255) and np.all(y[0, :, 70:] == 255)
    assert np.all(x[0, :50, :70, 0] == 1.0) and np.all(x[0, 50:] == 0)


def test_training_needs_a_crop(demo_cityscapes):
    import pytest

    data, samples = _cityscapes(demo_cityscapes)
    with pytest.raises(ValueError, match="crop size"):
        segmentation_pipeline(data, samples, 2, training=True)


def test_samples_are_plain_dataclasses():
    assert Sample("a", "b").label == "b"


def test_evaluation_centre_crop_cuts_large_images_and_pads_small_ones(tmp_path):
    from kseg.data.pipeline import center_crop

    label = np.arange(6 * 9, dtype=np.uint8).reshape(6, 9)
    image = np.repeat(label[..., None], 3, axis=-1)
    x, y = center_crop(tf.constant(image), tf.constant(label), (4, 5))
    np.testing.assert_array_equal(y, label[1:5, 2:7])  # (6-4)//2 = 1, (9-5)//2 = 2
    np.testing.assert_array_equal(x[..., 0], label[1:5, 2:7])
    x, y = center_crop(tf.constant(image), tf.constant(label), (10, 9))
    assert y.shape == (10, 9)
    np.testing.assert_array_equal(y[2:8], label)  # padded evenly: two rows each side
    assert np.all(y.numpy()[[0, 1, 8, 9]] == 255) and np.all(x.numpy()[[0, 1, 8, 9]] == 0)


def test_label_pngs_of_16_bits_read_as_their_values(tmp_path):
    """A 16-bit one-channel label PNG (as numpy arrays of uint16 save) holds its values;
    TensorFlow's default uint8 decode scales them by 1/257, which turned 0..4 into 0."""
    from kseg.data.pipeline import _color_table, _label_values

    values = np.array([[0, 1, 2, 4], [33, 254, 255, 300]], np.uint16)
    Image.fromarray(values).save(tmp_path / "16.png")
    Image.fromarray(np.minimum(values, 255).astype(np.uint8)).save(tmp_path / "8.png")
    assert Image.open(tmp_path / "16.png").mode == "I;16"
    want = np.minimum(values, 255)  # a value past 255 is ignored, as 255 is
    for name in ("16.png", "8.png"):
        got = _label_values(tf.constant(str(tmp_path / name)), None).numpy()
        np.testing.assert_array_equal(got, want, err_msg=name)
    # with a colour table, a one-channel PNG still gives its values, and colours map back
    colours = np.array([[0, 0, 0], [128, 64, 128], [70, 70, 70]], np.uint8)
    got = _label_values(tf.constant(str(tmp_path / "16.png")), _color_table(colours)).numpy()
    np.testing.assert_array_equal(got, want)
    Image.fromarray(colours[[[2, 1], [0, 2]]]).save(tmp_path / "rgb.png")
    got = _label_values(tf.constant(str(tmp_path / "rgb.png")), _color_table(colours)).numpy()
    np.testing.assert_array_equal(got, [[2, 1], [0, 2]])
