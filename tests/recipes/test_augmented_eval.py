"""Multi-scale and flip evaluation (`--scales`, `--flip`): sliding windows against the
whole image for a per-pixel model, scales and flips against their composition by hand,
and the recipe's evaluate command."""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from kseg.tasks.augmented import augmented_probabilities, window_logits


def _pixelwise_model() -> keras.Model:
    """A 1x1-conv model: each pixel's logits depend on that pixel only."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 1, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(4, 1)(x))


def test_sliding_windows_equal_the_whole_image_for_a_pixelwise_model():
    model = _pixelwise_model()
    x = np.random.default_rng(0).uniform(size=(1, 50, 70, 3)).astype("float32")
    whole = np.asarray(model(x))
    windows = window_logits(model, x, (24, 32), 1, ["logits"])["logits"]  # 4 x 3 windows
    np.testing.assert_allclose(windows, whole, atol=1e-5)


def test_scales_and_flip_average_the_softmax_of_each_view():
    model = _pixelwise_model()
    image = np.random.default_rng(1).uniform(size=(20, 28, 3)).astype("float32")

    def view(scale, flipped):
        size = (round(20 * scale), round(28 * scale))
        x = tf.image.resize(image[None], size, "bilinear").numpy()
        x = x[:, :, ::-1] if flipped else x
        p = tf.nn.softmax(model(x), axis=-1).numpy()
        p = p[:, :, ::-1] if flipped else p
        return tf.image.resize(p, (20, 28), "bilinear").numpy()[0]

    want = np.mean([view(s, f) for s in (0.5, 1.5) for f in (False, True)], axis=0)
    got = augmented_probabilities(model, image, (0.5, 1.5), flip=True)["logits"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, view(1.0, False), atol=1e-3)


def test_evaluate_with_scales_and_flip(trained, demo_cityscapes, tmp_path):
    from kseg.recipes import cityscapes

    common = ["evaluate", "--data-dir", demo_cityscapes, "--out", str(tmp_path),
              "--checkpoint", os.path.join(trained, "best.keras"), "--limit", "2"]  # fmt: skip
    cityscapes.main([*common, "--scales", "1.0"])  # the augmented path, one view
    one = json.load(open(tmp_path / "evaluation_best_multiscale.json"))
    cityscapes.main(common)
    plain = json.load(open(tmp_path / "evaluation_best.json"))
    assert one["confusion"] == plain["confusion"]  # one view: the plain evaluation
    cityscapes.main([*common, "--scales", "0.5,1.0,1.5", "--flip"])
    both = json.load(open(tmp_path / "evaluation_best_multiscale_flip.json"))
    assert (both["scales"], both["flip"]) == ([0.5, 1.0, 1.5], True)
    assert np.sum(both["confusion"]) == np.sum(plain["confusion"])
    assert both["confusion"] != plain["confusion"]


def test_lip_resizes_to_473_and_flips_at_test():
    """LIP's test protocol: every image resized to 473x473, its mirror averaged in."""
    from kseg.recipes import lip

    assert (lip.RECIPE.test_size, lip.RECIPE.test_flip) == ((473, 473), True)
    model = _pixelwise_model()
    image = np.random.default_rng(2).uniform(size=(30, 20, 3)).astype("float32")

    def view(flipped):
        x = tf.image.resize(image[None], (16, 16), "bilinear").numpy()
        x = x[:, :, ::-1] if flipped else x
        p = tf.nn.softmax(model(x), axis=-1).numpy()
        p = p[:, :, ::-1] if flipped else p
        return tf.image.resize(p, (30, 20), "bilinear").numpy()[0]

    got = augmented_probabilities(model, image, flip=True, size=(16, 16))["logits"]
    np.testing.assert_allclose(got, (view(False) + view(True)) / 2, atol=1e-5)
