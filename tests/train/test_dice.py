"""The soft Dice loss of `--loss dice` and `cross_entropy_dice`: a closed form, a NumPy
transcription of the classic formula (segmentation_models_pytorch's `DiceLoss` at its
default smooth 0; bench/dice_parity.py runs the real one), the ignore label, and the
task's compile."""

import numpy as np
import pytest

from kseg.tasks import SegmentationTask, SparseDiceLoss
from kseg.tasks.losses import make_loss

IGNORE = 255


def _dice(logits, labels, smooth=0.0, eps=1e-7):
    """Soft Dice as segmentation_models_pytorch's DiceLoss computes it (multiclass mode,
    from logits, ignore_index): softmax; the ignored pixels masked out of both sides; per
    class over the batch's pixels (2 intersection + smooth) / (cardinality + smooth),
    the denominator at least eps; 1 - that, times whether the class is in the labels;
    the mean over the classes."""
    classes = logits.shape[-1]
    x = logits.reshape(-1, classes).astype(np.float64)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    y = labels.reshape(-1)
    mask = (y != IGNORE)[:, None]
    truth = np.eye(classes)[np.where(y == IGNORE, 0, y)] * mask
    p = p * mask
    score = (2 * (p * truth).sum(0) + smooth) / np.maximum((p + truth).sum(0) + smooth, eps)
    return ((1 - score) * (truth.sum(0) > 0)).mean()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (2, 8, 12, 6)).astype("float32")
    labels = rng.integers(0, 5, (2, 8, 12))  # class 5 never labelled
    labels[0, :3] = IGNORE
    return logits, labels


def test_dice_of_uniform_logits_is_its_closed_form():
    """Every pixel p = 1/K: dice_c = 2 (n_c / K) / (N / K + n_c) for the N labelled
    pixels and the n_c of class c; classes without pixels add 0 to the mean."""
    labels = np.array([[0, 0, 0, 1], [1, 2, IGNORE, IGNORE]])[None]
    logits = np.zeros((1, 2, 4, 4), "float32")
    n, k, counts = 6, 4, np.array([3, 2, 1, 0])
    dice = 2 * (counts / k) / (n / k + counts)
    want = ((1 - dice) * (counts > 0)).sum() / k
    got = float(SparseDiceLoss(ignore_class=IGNORE)(labels, logits))
    assert got == pytest.approx(want, rel=1e-6)
    sure = np.where(np.eye(4)[np.where(labels == IGNORE, 3, labels)] > 0, 30.0, -30.0)
    assert float(SparseDiceLoss(ignore_class=IGNORE)(labels, sure.astype("float32"))) < 1e-6


def test_dice_is_the_classic_formula(batch):
    logits, labels = batch
    for smooth in (0.0, 1.0):
        got = float(SparseDiceLoss(smooth=smooth, ignore_class=IGNORE)(labels, logits))
        assert got == pytest.approx(_dice(logits, labels, smooth), rel=1e-5)
    both = float(make_loss("cross_entropy_dice", IGNORE)(labels, logits))
    cross_entropy = float(make_loss("cross_entropy", IGNORE)(labels, logits))
    assert both == pytest.approx(cross_entropy + _dice(logits, labels), rel=1e-5)


def test_dice_trains_a_model_through_the_task():
    """`--loss dice` compiles into the task: evaluate reports the Dice loss of the model's
    logits (plus the preset's L2), and a training step runs."""
    from kseg.models import ContextNet
    from kseg.train import preset_for

    model = ContextNet(num_classes=3, width_multiplier=0.25, aux_head=False)
    SegmentationTask().compile(model, preset_for("contextnet_cn14"), 3, 10, loss="dice")
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(2, 64, 64, 3)).astype("float32")
    labels = (images[..., 0] > 0.5).astype("int32") + (images[..., 1] > 0.8)
    labels[:, :4] = IGNORE
    want = _dice(np.asarray(model(images, training=False)), labels)
    result = model.evaluate(images, labels, return_dict=True, verbose=0)
    assert result["loss"] == pytest.approx(want + float(sum(model.losses)), rel=1e-4)
    model.run_eagerly = True  # one step: tracing a training graph costs more than it
    assert np.isfinite(model.fit(images, labels, verbose=0).history["loss"][0])
