"""The transfer protocol of Carrara et al. 2019 (section 5): a linear SVM on frozen
features, its C chosen by 5-fold cross-validation and retrained on the whole set."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

# Section 5: "a grid search of the penalty parameter C in {0.01, 0.1, 1, 10, 100}".
PAPER_CS = (0.01, 0.1, 1.0, 10.0, 100.0)


@dataclasses.dataclass
class SVMResult:
    """Attributes:
    c: the C with the best mean cross-validated accuracy.
    cv_accuracy: that accuracy (the number the official code reports and Fig. 2 plots).
    train_accuracy: of the SVM retrained with `c` on the whole set.
    converged: False if liblinear stopped at its iteration limit for some fit.
    """

    c: float
    cv_accuracy: float
    train_accuracy: float
    converged: bool


def linear_svm_transfer(
    features: np.ndarray,
    labels: np.ndarray,
    cs: Sequence[float] = PAPER_CS,
    folds: int = 5,
    max_iter: int = 2000,
    n_jobs: int | None = None,
) -> SVMResult:
    """scikit-learn's LinearSVC (squared hinge, L2, one-vs-rest) with grid-searched C.

    Folds are stratified and unshuffled, as GridSearchCV(cv=5) in the official code.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import LinearSVC

    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    smallest = np.bincount(np.unique(labels, return_inverse=True)[1]).min()
    if smallest < folds:
        raise ValueError(
            f"{folds}-fold cross-validation needs at least {folds} images per class; the "
            f"smallest class has {smallest}. Use more target images or fewer folds."
        )
    search = GridSearchCV(
        LinearSVC(max_iter=max_iter),
        {"C": list(cs)},
        scoring="accuracy",
        cv=StratifiedKFold(folds),
        refit=True,
        n_jobs=n_jobs,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(features, labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return SVMResult(
        c=float(search.best_params_["C"]),
        cv_accuracy=float(search.best_score_),
        train_accuracy=float(search.best_estimator_.score(features, labels)),
        converged=converged,
    )
