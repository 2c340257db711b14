"""HRNet's Cityscapes loss: online hard example mining cross-entropy with class weights,
against a NumPy transcription of HRNet-Semantic-Segmentation's `OhemCrossEntropy`, and
the HRNet-family Cityscapes presets that use it."""

import keras
import numpy as np
import pytest

from kseg.tasks.losses import CITYSCAPES_CLASS_WEIGHTS, SparseOhemCrossEntropy, make_loss
from kseg.train import preset_for

IGNORE = 255


def _reference(logits, labels, threshold, min_kept, weights):
    """HRNet's OHEM: the probability of the true class of every labelled pixel, sorted;
    the threshold is max(threshold, the min_kept-th smallest); the weighted cross-entropy
    averaged over the pixels below it."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    labels = labels.reshape(-1)
    valid = labels != IGNORE
    logits, labels = logits[valid], labels[valid]
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    log_p_y = log_p[np.arange(len(labels)), labels]
    losses = -log_p_y * np.asarray(weights)[labels]
    p_y = np.exp(log_p_y)
    if threshold is None:
        return losses.sum() / np.asarray(weights)[labels].sum()
    order = np.sort(p_y)
    cut = max(order[min(min_kept, len(order) - 1)], threshold)
    return losses[p_y < cut].mean()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (2, 8, 12, 19)).astype("float32")
    labels = rng.integers(0, 19, (2, 8, 12))
    confident = rng.uniform(size=labels.shape) < 0.6  # these pixels sure of their class
    np.put_along_axis(logits, labels[..., None], 8.0 * confident[..., None], axis=-1)
    labels[0, :2] = IGNORE
    return logits, labels


@pytest.mark.parametrize("min_kept", [4, 150])  # the threshold decides / min_kept decides
def test_ohem_is_hrnets(batch, min_kept):
    logits, labels = batch
    loss = SparseOhemCrossEntropy(0.9, min_kept, CITYSCAPES_CLASS_WEIGHTS, ignore_class=IGNORE)
    want = _reference(logits, labels, 0.9, min_kept, CITYSCAPES_CLASS_WEIGHTS)
    assert float(loss(labels, logits)) == pytest.approx(want, rel=1e-5)
    # the cases differ: below 0.9 there are fewer than 150 pixels, more than 4
    p = keras.ops.softmax(logits).numpy().reshape(-1, 19)
    valid = labels.reshape(-1) != IGNORE
    p_y = p[np.arange(len(p)), np.where(valid, labels.reshape(-1), 0)][valid]
    assert 4 < np.sum(p_y < 0.9) < 150 < len(p_y)


def test_weighted_cross_entropy_is_pytorchs_weighted_mean(batch):
    logits, labels = batch
    weighted = make_loss("cross_entropy", IGNORE, CITYSCAPES_CLASS_WEIGHTS)
    want = _reference(logits, labels, None, 0, CITYSCAPES_CLASS_WEIGHTS)
    assert float(weighted(labels, logits)) == pytest.approx(want, rel=1e-5)
    plain = make_loss("cross_entropy", IGNORE)  # Keras' own, without weights
    ones = _reference(logits, labels, None, 0, [1.0] * 19)
    assert float(plain(labels, logits)) == pytest.approx(ones, rel=1e-5)


def test_hrnet_family_cityscapes_presets_take_hrnets_protocol():
    hrnet = preset_for("hrnetv2_w48", "cityscapes")
    assert (hrnet.crop, hrnet.loss) == ((512, 1024), "ohem")
    assert hrnet.class_weights == CITYSCAPES_CLASS_WEIGHTS and len(hrnet.class_weights) == 19
    for name in ("segnode", "residual_hrnet", "hrnetv2_w48_ocr"):
        assert preset_for(name, "cityscapes").crop == (512, 1024)
    assert preset_for("hrnetv2_w48", "voc").loss == "cross_entropy"
    assert preset_for("hrnetv2_w48", "voc").crop is None
    from kseg.recipes import pascal_context  # HRNet's PASCAL-Context crops

    assert pascal_context.RECIPE.crop == (520, 520)


def test_ohem_trains_a_model_through_the_task(batch):
    """The task compiles the preset's loss and weights; a training step runs on it and
    reports the OHEM value of the batch."""
    from kseg.models import ContextNet
    from kseg.tasks import SegmentationTask

    model = ContextNet(num_classes=19, width_multiplier=0.25, aux_head=False)
    preset = preset_for("hrnetv2_w48", "cityscapes")
    SegmentationTask().compile(model, preset, 19, total_steps=2)
    images = np.random.default_rng(1).uniform(size=(2, 64, 64, 3)).astype("float32")
    labels = np.random.default_rng(2).integers(0, 19, (2, 64, 64))
    want = _reference(
        np.asarray(model(images, training=False)), labels, 0.9, 131072, preset.class_weights
    )
    penalty = float(sum(model.losses))  # the preset's coupled L2
    result = model.evaluate(images, labels, return_dict=True, verbose=0)
    assert result["loss"] == pytest.approx(want + penalty, rel=1e-4)
    # the loss ran in a traced graph above; its gradient step runs eagerly (tracing a
    # training graph costs ~20 s here and the recipes' tests train in graph mode)
    model.run_eagerly = True
    assert np.isfinite(model.train_on_batch(images, labels)[0])
