"""The figures of Carrara et al. 2019: accuracy against t (Fig. 2) and the images that
need the most and fewest solver steps (Fig. 1)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_over_time(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str, title: str
) -> str:
    """Fig. 2 as a PNG: for each model, linear-SVM accuracy (%) against the feature's
    position (t for ODE blocks; ResNet blocks evenly placed on [0, 1])."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    for name, (positions, accuracies) in curves.items():
        ax.plot(list(positions), [100 * a for a in accuracies], marker="o", ms=3, label=name)
    ax.set_xlabel("t (ODE nets) / block, evenly placed (ResNet)")
    ax.set_ylabel("linear SVM accuracy (%)")
    ax.set_title(textwrap.fill(title, 70), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_extreme_images(
    images: np.ndarray, steps: np.ndarray, path: str, count: int = 5, title: str = ""
) -> str:
    """Fig. 1 as a PNG: the `count` images needing the most solver steps (top row) and the
    fewest (bottom row), each with its step count. `images` are uint8 (N, H, W, 3)."""
    plt = _pyplot()
    order = np.argsort(steps, kind="stable")
    rows = [order[::-1][:count], order[:count]]
    fig, axes = plt.subplots(2, count, figsize=(1.4 * count, 3.2), dpi=100, squeeze=False)
    for r, (row, label) in enumerate(zip(rows, ("most", "fewest"), strict=True)):
        for c, index in enumerate(row):
            ax = axes[r][c]
            ax.imshow(images[index])
            ax.set_title(f"{int(steps[index])}", fontsize=8)
            ax.axis("off")
        axes[r][0].text(
            -0.3,
            0.5,
            label,
            transform=axes[r][0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
        )
    fig.suptitle(title or "solver steps per image", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
