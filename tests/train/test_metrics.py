"""Confusion matrix and IoU against scikit-learn, hand counts and the official Cityscapes
evaluation (cityscapesscripts)."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from kseg.data import Cityscapes
from kseg.train.metrics import (
    MeanIoU,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    iou_table,
    mean_dice,
    mean_iou,
    mean_recall,
    pixel_accuracy,
    precision_per_class,
    recall_per_class,
)


def test_confusion_matrix_matches_sklearn_and_leaves_out_the_ignore_label():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (3, 20, 30))
    labels[:, :4] = 255
    predictions = rng.integers(0, 5, (3, 20, 30))
    ours = confusion_matrix(labels, predictions, 5).numpy()
    keep = labels != 255
    theirs = sk_confusion_matrix(labels[keep], predictions[keep], labels=range(5))
    np.testing.assert_array_equal(ours, theirs)


def test_iou_by_hand():
    # class 0: TP 3, FP 1, FN 2 -> 3/6; class 1: TP 4, FP 2, FN 1 -> 4/7; class 2 absent.
    confusion = np.array([[3, 2, 0], [1, 4, 0], [0, 0, 0]])
    np.testing.assert_allclose(iou_per_class(confusion)[:2], [3 / 6, 4 / 7])
    assert np.isnan(iou_per_class(confusion)[2])
    assert mean_iou(confusion) == pytest.approx((3 / 6 + 4 / 7) / 2)
    # Dice = 2 TP / (2 TP + FP + FN): class 0 6/9, class 1 8/11
    np.testing.assert_allclose(dice_per_class(confusion)[:2], [6 / 9, 8 / 11])
    assert mean_dice(confusion) == pytest.approx((6 / 9 + 8 / 11) / 2)
    # precision TP / (TP + FP): 3/4, 4/6; recall TP / (TP + FN): 3/5, 4/5 (mAcc 0.7)
    np.testing.assert_allclose(precision_per_class(confusion)[:2], [3 / 4, 4 / 6])
    np.testing.assert_allclose(recall_per_class(confusion)[:2], [3 / 5, 4 / 5])
    assert mean_recall(confusion) == pytest.approx(0.7) and pixel_accuracy(confusion) == 0.7
    table = iou_table(confusion, ["a", "b", "c"]).splitlines()
    assert table[0].split() == ["class", "IoU", "Dice", "Prec.", "Recall"]
    assert table[1].split() == ["a", "50.00", "66.67", "75.00", "60.00"]
    assert table[3].split() == ["c", "nan", "nan", "nan", "nan"]
    assert table[4].split() == ["mean", "IoU", "53.57"]
    assert table[5].split() == ["mean", "Dice", "69.70"]
    assert table[6].split() == ["mean", "recall", "(mAcc)", "70.00"]
    assert table[7].split() == ["pixel", "accuracy", "70.00"]


def test_per_class_scores_match_sklearn():
    """Precision, recall and Dice (F1) per class against scikit-learn's
    precision_recall_fscore_support on the labelled pixels, a class never predicted and a
    class absent from the labels included (NaN where sklearn's zero_division is)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, (2, 30, 40))  # class 5 never in the labels
    labels[:, :3] = 255
    predictions = rng.integers(0, 6, (2, 30, 40))
    predictions[predictions == 4] = 3  # class 4 never predicted
    confusion = confusion_matrix(labels, predictions, 6).numpy()
    keep = labels != 255
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels[keep], predictions[keep], labels=range(6), zero_division=np.nan
    )
    np.testing.assert_allclose(precision_per_class(confusion), precision, equal_nan=True)
    np.testing.assert_allclose(recall_per_class(confusion), recall, equal_nan=True)
    np.testing.assert_allclose(dice_per_class(confusion)[:5], f1[:5])
    assert np.isnan(precision[4]) and np.isnan(recall[5])
    assert pixel_accuracy(confusion) == pytest.approx(
        accuracy_score(labels[keep], predictions[keep])
    )


def test_keras_metric_accumulates_like_the_function():
    rng = np.random.default_rng(1)
    metric = MeanIoU(4)
    total = np.zeros((4, 4), np.int64)
    for _ in range(3):
        labels = rng.integers(0, 4, (2, 8, 8))
        logits = rng.normal(size=(2, 8, 8, 4)).astype("float32")
        metric.update_state(labels, logits)
        total += confusion_matrix(labels, logits.argmax(-1), 4).numpy()
    assert float(metric.result()) == pytest.approx(mean_iou(total), abs=1e-6)
    metric.reset_state()
    assert int(np.sum(metric.confusion.numpy())) == 0


def test_mean_iou_agrees_with_the_official_cityscapes_evaluation(demo_cityscapes, tmp_path):
    """Predictions written as labelIds, scored by cityscapesscripts and by kseg."""
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as official

    data = Cityscapes(demo_cityscapes)
    ground_truth = sorted(glob.glob(os.path.join(demo_cityscapes, "gtFine", "*", "*", "*.png")))
    rng = np.random.default_rng(0)
    predictions, confusion = [], np.zeros((19, 19), np.int64)
    for i, path in enumerate(ground_truth):
        train_ids = data.label_map[np.asarray(Image.open(path))]
        guess = np.where(train_ids == 255, 0, train_ids)
        wrong = rng.random(guess.shape) < 0.3  # 30% of pixels get a random class
        guess = np.where(wrong, rng.integers(0, 19, guess.shape), guess).astype(np.uint8)
        out = tmp_path / f"pred_{i}.png"
        Image.fromarray(data.train_ids_to_label_ids(guess)).save(out)
        predictions.append(str(out))
        confusion += confusion_matrix(train_ids, guess, 19).numpy()

    args = official.args
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, False
    result = official.evaluateImgLists(predictions, ground_truth, args)
    theirs = result["averageScoreClasses"]
    assert mean_iou(confusion) == pytest.approx(theirs, abs=0.01)
    for name, iou in zip(data.class_names, iou_per_class(confusion), strict=True):
        official_iou = result["classScores"][name]
        if np.isnan(iou):
            assert np.isnan(official_iou)
        else:
            assert iou == pytest.approx(official_iou, abs=1e-9)


def test_keras_metric_leaves_absent_classes_out_and_traces_no_masks():
    """Classes in neither labels nor predictions are left out of the mean (NaN when no
    class is present, as `mean_iou`), and a training step's metric update and result
    hold no boolean masks (ops of unknown output size, `Where` and `GatherV2`)."""
    metric = MeanIoU(5)
    assert np.isnan(float(metric.result())) and np.isnan(mean_iou(np.zeros((5, 5))))
    labels = np.array([[[0, 0, 1, 255], [1, 4, 4, 255]]])
    logits = np.eye(5, dtype="float32")[np.array([[[0, 1, 1, 2], [1, 4, 0, 3]]])]
    metric.update_state(labels, logits)
    want = confusion_matrix(labels, logits.argmax(-1), 5).numpy()
    assert want[2:4].sum() == 0 and want[:, 2:4].sum() == 0  # classes 2 and 3 absent
    assert float(metric.result()) == pytest.approx(mean_iou(want), abs=1e-6)

    @tf.function
    def step(y, p):
        metric.update_state(y, p)
        return metric.result()

    graph = step.get_concrete_function(
        tf.TensorSpec((2, 8, 8), tf.int32), tf.TensorSpec((2, 8, 8, 5), tf.float32)
    ).graph
    assert not {op.type for op in graph.get_operations()} & {"Where", "GatherV2"}
