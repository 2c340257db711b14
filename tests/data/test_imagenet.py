"""ImageNet's file layouts (`kseg.data.imagenet`) and its tf.data pipeline
(`kseg.data.imagenet_pipeline`), against torchvision's transforms' arithmetic."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kseg.data.imagenet import list_images
from kseg.data.imagenet_pipeline import (
    center_crop,
    eval_resize,
    imagenet_pipeline,
    random_resized_crop,
    resize_shorter,
    ten_crops,
)
from kseg.errors import UserError
from kseg.recipes.imagenet import holdout_per_class, top_k_errors

WNIDS = ("n01440764", "n01443537", "n15075141")  # sorted: labels 0, 1, 2
MORE = ("n01484850", "n01491361")  # classes 4 and 5 for 5-class tests


def _save(path, size=(40, 30), mode="RGB", fmt="JPEG", seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, fmt)


def _imagenet(root, kaggle=False, more=()):
    """Three classes (and `more`), two training images each; the val images by class or,
    `kaggle`, flat under ILSVRC/Data/CLS-LOC with LOC_val_solution.csv at the root."""
    base = os.path.join(root, "ILSVRC", "Data", "CLS-LOC") if kaggle else root
    for wnid in reversed(WNIDS + tuple(more)):  # out of order: labels follow sorted names
        for k in range(2):
            _save(os.path.join(base, "train", wnid, f"{wnid}_{k}.JPEG"))
    val = {"ILSVRC2012_val_00000001": WNIDS[2], "ILSVRC2012_val_00000002": WNIDS[0]}
    for name, wnid in val.items():
        folder = os.path.join(base, "val") if kaggle else os.path.join(base, "val", wnid)
        _save(os.path.join(folder, f"{name}.JPEG"))
    if kaggle:
        with open(os.path.join(root, "LOC_val_solution.csv"), "w") as f:
            f.write("ImageId,PredictionString\n")
            for name, wnid in val.items():
                f.write(f"{name},{wnid} 10 20 30 40 {wnid} 1 2 3 4 \n")
    return str(root)


@pytest.mark.parametrize("kaggle", [False, True])
def test_both_layouts_list_the_same_labels_in_sorted_wordnet_order(tmp_path, kaggle):
    root = _imagenet(tmp_path, kaggle)
    train, val = list_images(root, "train"), list_images(root, "val")
    assert train.classes == WNIDS and len(train) == 6
    assert list(train.labels) == [0, 0, 1, 1, 2, 2]
    assert all(
        WNIDS[y] in os.path.basename(p) for p, y in zip(train.paths, train.labels, strict=True)
    )
    names = [os.path.basename(p) for p in val.paths]
    assert {n: int(y) for n, y in zip(names, val.labels, strict=True)} == {
        "ILSVRC2012_val_00000001.JPEG": 2,
        "ILSVRC2012_val_00000002.JPEG": 0,
    }


def test_a_layout_that_does_not_say_the_classes_is_one_message(tmp_path):
    root = _imagenet(tmp_path, kaggle=True)
    os.remove(os.path.join(root, "LOC_val_solution.csv"))
    with pytest.raises(UserError, match="no LOC_val_solution.csv gives their classes"):
        list_images(root, "val")
    with pytest.raises(UserError, match="has no train/ folder of ImageNet"):
        list_images(str(tmp_path / "elsewhere"), "train")


def test_holdout_takes_the_same_images_of_every_class(tmp_path):
    train = list_images(_imagenet(tmp_path), "train")
    rest, held = holdout_per_class(train, 1)
    assert sorted(held.labels) == [0, 1, 2] and sorted(rest.labels) == [0, 1, 2]
    assert not set(rest.paths) & set(held.paths)
    assert holdout_per_class(train, 1)[1].paths == held.paths
    with pytest.raises(UserError, match="has 2 training images; 2 of each are held out"):
        holdout_per_class(train, 2)


def _encoded(pixels, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return tf.constant(buffer.getvalue())


def test_evaluation_crops_follow_torchvisions_resize_and_center_crop():
    """Resize(256) of a 300x400 image: 256x341 (the longer side truncated); CenterCrop(224)
    starts at round(16.0), round(58.5) = 16, 58 (half to even, as Python's round); the
    ten crops are the corners, the centre and their mirror images."""
    assert eval_resize(224) == 256
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)
    contents = _encoded(pixels)
    resized = resize_shorter(tf.io.decode_png(contents), 256).numpy()
    assert resized.shape == (256, 341, 3)
    # center_crop computes its window alone: the same pixels to float32 rounding
    np.testing.assert_allclose(center_crop(contents, 224), resized[16:240, 58:282], atol=0.02)
    crops = ten_crops(contents, 224).numpy()
    windows = [(0, 0), (0, 117), (32, 0), (32, 117), (16, 58)]
    for k, (top, left) in enumerate(windows):
        np.testing.assert_array_equal(crops[k], resized[top : top + 224, left : left + 224])
        np.testing.assert_array_equal(crops[k + 5], crops[k][:, ::-1])


def test_jpegs_are_read_as_pillow_reads_them_in_training_and_evaluation_crops(tmp_path):
    """torchvision reads ImageNet's JPEGs with Pillow: a JPEG's crops are those of Pillow's
    pixels of it stored as a PNG, in evaluation and, with the same seed (the window depends
    only on the image's size), in training (TensorFlow's default DCT is up to 7 off)."""
    path = tmp_path / "photo.JPEG"
    _save(str(path), size=(120, 90), seed=3)
    contents = tf.constant(path.read_bytes())
    pillow = _encoded(np.asarray(Image.open(path).convert("RGB")))
    np.testing.assert_array_equal(center_crop(contents, 64), center_crop(pillow, 64))
    seed = tf.constant([3, 4])
    np.testing.assert_array_equal(
        random_resized_crop(contents, 48, seed), random_resized_crop(pillow, 48, seed)
    )


def test_training_batches_are_random_crops_in_0_1_and_deterministic_with_a_seed(tmp_path):
    """Every file ImageNet holds under a .JPEG name reads: JPEG, greyscale and CMYK JPEG,
    and a PNG; crops are (size, size) in [0, 1], a seed repeats them, and epochs differ."""
    paths = []
    for k, (mode, fmt) in enumerate([("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"),
                                     ("RGB", "PNG")]):  # fmt: skip
        path = str(tmp_path / f"image{k}.JPEG")
        _save(path, size=(50 + 10 * k, 40), mode=mode, fmt=fmt, seed=k)
        paths.append(path)
    labels = np.arange(4, dtype=np.int32)

    def epochs(seed):
        ds = imagenet_pipeline(paths, labels, 4, training=True, size=32, seed=seed)
        return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(2)]

    first, again = epochs(7), epochs(7)
    x, y = first[0][0]
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1 and sorted(y) == [0, 1, 2, 3]
    np.testing.assert_array_equal(first[0][0][0], again[0][0][0])
    assert not np.array_equal(first[0][0][0], first[1][0][0])  # a new draw every epoch


def test_top_k_errors_against_numpy():
    """Top-1 and top-5 error of given logits, and with ten crops the mean of the crops'
    softmax, as numpy computes them."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 10, 8)).astype(np.float32) * 3
    labels = rng.integers(0, 8, 40).astype(np.int32)
    images = np.arange(40 * 10, dtype=np.float32).reshape(40, 10, 1, 1, 1)

    def model(x, training=False):  # looks each crop's logits up by its pixel value
        return tf.gather(tf.reshape(logits, (-1, 8)), tf.cast(tf.reshape(x, [-1]), tf.int32))

    def errors(scores):
        ranks = (scores > scores[np.arange(40), labels][:, None]).sum(axis=1)
        return np.mean(ranks >= 1), np.mean(ranks >= 5)

    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(top_k_errors(model, ds, True), errors(probs.mean(1)))
    centre = tf.data.Dataset.from_tensor_slices((images[:, 4], labels)).batch(16)
    np.testing.assert_allclose(top_k_errors(model, centre, False), errors(logits[:, 4]))
