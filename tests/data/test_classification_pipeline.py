"""The CIFAR-style tf.data pipeline and the embedded real classification data."""

import numpy as np

from kseg.data import CIFAR10_MEAN, CIFAR10_STD, ClassificationAugmentation, classification_pipeline
from kseg.data.demo_classification import demo_source, demo_target, load_digits_set


def _images(n=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n, dtype=np.int32)


def test_evaluation_batches_are_the_normalised_images_in_order():
    images, labels = _images()
    x, y = next(iter(classification_pipeline(images, labels, 8, training=False)))
    want = (images / 255.0 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    np.testing.assert_allclose(x, want, atol=1e-5)
    np.testing.assert_array_equal(y, labels)


def test_training_batches_are_seeded_and_augmented():
    images, labels = _images()

    def first(seed):
        return next(iter(classification_pipeline(images, labels, 8, training=True, seed=seed)))

    (a, ya), (b, yb), (c, _) = first(1), first(1), first(2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a, c)
    assert sorted(ya.numpy()) == list(labels)  # a shuffled epoch of every image
    plain = classification_pipeline(
        images, labels, 8, training=True, seed=1, augmentation=ClassificationAugmentation.none()
    )
    x, y = next(iter(plain))
    want = (images[y.numpy()] / 255.0 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    np.testing.assert_allclose(x, want, atol=1e-5)


def test_padding_crop_moves_the_image_by_at_most_four_pixels():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 14:18, 14:18] = 255
    aug = ClassificationAugmentation(pad=4, hue=0.0, saturation=0.0, flip=False)
    for seed in range(5):
        ds = classification_pipeline(
            image,
            np.zeros(1, np.int32),
            1,
            training=True,
            seed=seed,
            mean=(0, 0, 0),
            std=(1, 1, 1),
            augmentation=aug,
        )
        x = next(iter(ds))[0].numpy()[0, ..., 0]
        ys, xs = np.nonzero(x)
        assert len(ys) == 16 and 10 <= ys.min() <= 18 and 10 <= xs.min() <= 18


def test_demo_source_and_target_share_no_class():
    train, test = demo_source(60, 20)
    assert train.images.shape[1:] == (32, 32, 3) and train.images.dtype == np.uint8
    assert len(train.labels) == 60 and len(test.labels) == 20
    target = demo_target(train.name)
    assert target.images.shape[1:] == (32, 32, 3)
    if train.name.startswith("Fashion-MNIST"):
        assert target.classes == tuple(str(d) for d in range(10))
    else:
        assert set(train.classes).isdisjoint(target.classes)


def test_digits_subsets_keep_their_real_pixels():
    from sklearn.datasets import load_digits

    data = load_digits()
    high = load_digits_set((5, 6, 7, 8, 9))
    assert len(high.labels) == int(np.sum(data.target >= 5))
    assert high.labels.min() == 0 and high.labels.max() == 4
    first = data.images[data.target >= 5][0]
    # resized 8x8 -> 32x32 bilinear: the mean brightness is kept to within a few levels
    assert abs(high.images[0, ..., 0].mean() - first.mean() * 16) < 6


def test_without_fashion_mnist_the_demo_trains_on_digits_0_to_4(monkeypatch):
    import kseg.data.demo_classification as demo

    monkeypatch.setattr(demo, "fashion_mnist_available", lambda *a: False)
    train, test = demo.demo_source(100, 50)
    assert train.name.startswith("scikit-learn digits 0-4")
    assert (len(train.labels), len(test.labels)) == (100, 50)  # as many as asked for
    assert set(train.labels) == set(range(5))
    big_train, big_test = demo.demo_source(2000, 400)  # more than the 901 scans of 0-4
    assert (len(big_train.labels), len(big_test.labels)) == (750, 151)  # all, 2000:400
    target = demo.demo_target(train.name)
    assert target.classes == ("5", "6", "7", "8", "9")
