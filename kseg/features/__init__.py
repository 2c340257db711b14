"""Continuous image features of ODE Nets (Carrara et al. 2019): extraction of z(t) and of
ResNet block outputs, the linear-SVM transfer protocol and its figures."""

from kseg.features.extract import (
    PAPER_TIMES,
    Features,
    extract,
    solver_statistics,
    solver_step_report,
)
from kseg.features.plots import plot_accuracy_over_time, plot_extreme_images
from kseg.features.transfer import PAPER_CS, SVMResult, linear_svm_transfer

__all__ = [
    "PAPER_CS",
    "PAPER_TIMES",
    "Features",
    "SVMResult",
    "extract",
    "linear_svm_transfer",
    "plot_accuracy_over_time",
    "plot_extreme_images",
    "solver_statistics",
    "solver_step_report",
]
