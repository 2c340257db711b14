"""The linear-SVM transfer protocol of Carrara et al. section 5."""

import numpy as np
import pytest

from kseg.features import PAPER_CS, linear_svm_transfer


def test_separable_features_are_classified_perfectly():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    features = np.eye(4)[labels] * 5 + rng.normal(0, 0.1, (40, 4))
    result = linear_svm_transfer(features, labels)
    assert result.cv_accuracy == 1.0 and result.train_accuracy == 1.0
    assert result.c in PAPER_CS


def test_features_without_information_score_at_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    result = linear_svm_transfer(rng.normal(size=(300, 8)), labels)
    assert result.cv_accuracy < 0.2  # chance is 0.1


def test_real_digit_pixels_match_a_direct_cross_validation():
    """The protocol on scikit-learn's digits: its score is the best mean 5-fold accuracy
    over the C grid, recomputed here with cross_val_score (a second path)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import LinearSVC

    data = load_digits()
    x, y = data.data[:600] / 16.0, data.target[:600]
    result = linear_svm_transfer(x, y, cs=(0.01, 1.0))
    direct = {
        c: cross_val_score(LinearSVC(C=c, max_iter=2000), x, y, cv=5).mean() for c in (0.01, 1.0)
    }
    assert result.c == max(direct, key=direct.get)
    assert result.cv_accuracy == pytest.approx(max(direct.values()))
    assert result.cv_accuracy > 0.9


def test_too_few_images_per_class_for_the_folds_is_explained():
    with pytest.raises(ValueError, match="at least 5 images per class"):
        linear_svm_transfer(np.zeros((6, 2)), np.array([0, 0, 0, 1, 1, 1]))
